"""A study's preset: which models, under which shared recipe, over which seeds, testing which claims.

A preset (``configs/compare/NAME.yaml``) lists the entries, the shared recipe, the seeds and the claims::

    title: what is compared
    seeds: 3           # each entry is trained once per seed (an int N: seeds 0..N-1; or a list)
    jobs: 1            # runs trained at a time in worker processes ("auto": one per CPU core; CPU only)
    recipe:            # TrainConfig keys shared by every entry (see hiermlp.train.TrainConfig)
      epochs: 4
      img_size: 32
    defaults:          # model and model_kwargs every entry starts from
      model: swin_tiny_patch4_window7_224
      model_kwargs: {patch_size: 2, embed_dim: 32, depths: [2, 2, 2], num_heads: [2, 4, 8], window_size: 4}
    bench:             # throughput of the trained models (hiermlp.bench.benchmark_models options)
      batch: 64
      repeats: 5
    entries:
      - label: linear
        model: linear_pixels               # baseline: true puts it in every row's "vs baselines" column
        model_kwargs: {}
        baseline: true
      - label: swin
        model_kwargs: {mixer: attention}     # merged over defaults.model_kwargs
      - label: swin-noshift
        model_kwargs: {mixer: attention, shift: false}
    claims:            # planned tests: delta = top-1 of a minus top-1 of b, paired over seeds
      - {claim: shifted windows, family: swin, a: swin, b: swin-noshift, paper: "+1.1 (Swin-T, ImageNet-1k)"}

Command-line ``key=value`` overrides (hiermlp's one grammar, :mod:`hiermlp.overrides`) go to the recipe
(``epochs=1``), to a section with a dotted key (``bench.batch=32``, ``defaults.model_kwargs.window_size=8``),
set the seeds (``seeds=5``) or select entries (``only=swin,pool``; claims whose entries are left out are
dropped); ``jobs=N`` sets how many runs train at a time. Every section's values are checked against their
types (:mod:`hiermlp.schema`); the recipe is checked as a :class:`~hiermlp.train.TrainConfig` when the study runs.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hiermlp.errors import ConfigError, suggest
from hiermlp.limits import MAX_THREADS, check_threads
from hiermlp.overrides import load_yaml, parse_overrides, split_item
from hiermlp.schema import check_fields, field_types
from hiermlp.train.config import TrainConfig, find_preset

__all__ = ["BENCH_OPTIONS", "ComparePreset", "find_compare_preset", "load_preset", "parse_jobs", "run_dir_name"]

SECTIONS = ("title", "seeds", "jobs", "recipe", "defaults", "bench", "entries", "claims")
# hiermlp.bench.benchmark_models options a preset's bench section may set, and skip (no timing at all)
BENCH_OPTIONS: dict[str, Any] = {
    "batch": int,
    "repeats": int,
    "warmup": int,
    "min_sample_s": float,
    "threads": int | None,
    "memory": bool,
    "train": bool,
    "latency": bool,
    "skip": bool,
}
_ENTRY = {"label": str, "name": str, "model": str, "model_kwargs": dict[str, Any], "baseline": bool}
_CLAIM = {"claim": str, "family": str, "a": str, "b": str, "paper": str}


@dataclass
class ComparePreset:
    """A parsed preset: entries (label, model, model_kwargs, baseline), recipe, seeds, claims, bench options."""

    title: str
    recipe: dict[str, Any]
    entries: list[dict[str, Any]]
    bench: dict[str, Any] = field(default_factory=dict)
    source: str = ""
    seeds: list[int] = field(default_factory=lambda: [0])
    claims: list[dict[str, Any]] = field(default_factory=list)
    jobs: int | str = 1  # runs trained at a time (worker processes), or "auto" (one per CPU core)


def find_compare_preset(name_or_path: str | Path) -> Path:
    """A preset path, or a name under ``configs/compare/`` (``.yaml`` optional).

    Raises:
        FileNotFoundError: No such preset; the message lists the known ones.
    """
    return find_preset(name_or_path, kind="compare")


def _override_schema() -> dict[str, Any]:
    """What a command-line override may set (bare keys go to the recipe)."""
    return {
        "title": str,
        "seeds": Any,
        "jobs": Any,
        "only": str,
        "recipe": field_types(TrainConfig),
        "defaults": {"model": str, "model_kwargs": dict[str, Any]},
        "bench": dict[str, Any],  # checked with the file's own bench options below
    }


def _seeds(value: Any, base: int, where: str) -> list[int]:
    if isinstance(value, bool) or value is None:
        raise ConfigError(f"{where}: seeds must be a count (seeds: 3) or a list of ints, got {value!r}")
    if isinstance(value, int):
        if value < 1:
            raise ConfigError(f"{where}: seeds must be >= 1, got {value}")
        return [base + i for i in range(value)]
    if isinstance(value, list) and value and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        if len(set(value)) != len(value):
            raise ConfigError(f"{where}: seeds {value} repeat a seed")
        return list(value)
    raise ConfigError(f"{where}: seeds must be a count (seeds: 3) or a list of ints, got {value!r}")


def parse_jobs(value: Any, where: str) -> int | str:
    """A preset's ``jobs``: a count in ``[1, MAX_THREADS]`` or ``"auto"``.

    Raises:
        ConfigError: Anything else.
    """
    if value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_THREADS):
        return value
    bound = f" (at most {MAX_THREADS})" if isinstance(value, int) and not isinstance(value, bool) and value > 1 else ""
    raise ConfigError(f"{where}: jobs must be a count >= 1 or 'auto', got {value!r}{bound}")


def _read(path: Path) -> dict[str, Any]:
    try:
        data = load_yaml(path.read_text()) or {}
    except yaml.YAMLError as e:
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{path}: invalid YAML: {problem}; fix the file") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a compare preset must be a mapping of sections")
    unknown = [k for k in data if k not in SECTIONS]
    if unknown:
        raise ConfigError(f"{path}: unknown section(s) {unknown}; valid: {list(SECTIONS)}")
    return copy.deepcopy(data)


def _overridden(data: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """``data`` with the command line's overrides applied (a key that names no section sets the recipe)."""
    schema = _override_schema()
    items = []
    for item in overrides:
        key, raw = split_item(item)
        items.append(f"{key}={raw}" if key.split(".")[0] in schema else f"recipe.{key}={raw}")
    return parse_overrides(items, schema, base=data, what="compare key")


def _entries(raw: Any, defaults: dict[str, Any], where: str) -> list[dict[str, Any]]:
    entries = []
    for i, raw_entry in enumerate(raw or []):
        if not isinstance(raw_entry, dict):
            raise ConfigError(f"{where}: entry {i} must be a mapping with a label and a model, got {raw_entry!r}")
        try:
            e = check_fields(_ENTRY, raw_entry, what="entry key")
        except ConfigError as err:
            raise ConfigError(f"{where}: entry {i}: {err}") from None
        if not (e.get("model") or defaults.get("model")):
            raise ConfigError(f"{where}: entry {i} needs a 'model' (or defaults.model)")
        model = e.get("model") or defaults["model"]
        # an entry that names its own model starts from its own kwargs (a baseline shares no geometry)
        own = "model" in e and e["model"] != defaults.get("model")
        kwargs = {**({} if own else defaults.get("model_kwargs") or {}), **e.get("model_kwargs", {})}
        label = e.get("label") or e.get("name") or model
        entries.append({"label": label, "model": model, "model_kwargs": kwargs, "baseline": e.get("baseline", False)})
    labels = [e["label"] for e in entries]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"{where}: entry labels must be unique, got {labels}")
    dirs: dict[str, str] = {}
    for label in labels:  # one run directory per label: two entries must never train into one
        name = run_dir_name(label)
        if not name.strip("."):
            raise ConfigError(f"{where}: entry label {label!r} cannot name a run directory; use letters or digits")
        other = dirs.setdefault(name.casefold(), label)  # casefold: case-insensitive file systems
        if other != label:
            raise ConfigError(
                f"{where}: entry labels {other!r} and {label!r} would share the run directory {name!r}; give labels "
                "that differ in letters, digits, '-', '_' or '.'"
            )
    return entries


def run_dir_name(label: str) -> str:
    """The directory an entry's runs go to: the label with every character but letters, digits, ``-``, ``_``
    and ``.`` replaced by ``_`` (:func:`load_preset` refuses labels that would share one)."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in label)


def _claims(raw: Any, labels: list[str], where: str) -> list[dict[str, Any]]:
    claims = []
    for i, c in enumerate(raw or []):
        if not isinstance(c, dict) or not {"a", "b"} <= set(c):
            raise ConfigError(f"{where}: claim {i} must be a mapping with a, b (and claim, family, paper), got {c!r}")
        try:
            c = check_fields(_CLAIM, c, what="claim key")
        except ConfigError as err:
            raise ConfigError(f"{where}: claim {i}: {err}") from None
        for side in ("a", "b"):
            if c[side] not in labels:
                raise ConfigError(f"{where}: claim {i} names no entry {c[side]!r}.{suggest(c[side], labels)}")
        claims.append(
            {
                "claim": c.get("claim") or f"{c['a']} vs {c['b']}",
                "family": c.get("family") or "",
                "a": c["a"],
                "b": c["b"],
                "paper": c.get("paper") or "-",
            }
        )
    return claims


def load_preset(name_or_path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> ComparePreset:
    """Read a preset and apply ``key=value`` overrides (see the module docstring).

    Raises:
        FileNotFoundError: The preset does not exist.
        ConfigError: Unknown section, malformed entry, claim or override, or a value of the wrong type.
    """
    path = find_compare_preset(name_or_path)
    data = _overridden(_read(path), overrides)
    only = data.pop("only", None)
    try:
        bench = check_fields(BENCH_OPTIONS, data.get("bench") or {}, what="bench option")
        if bench.get("threads") is not None:
            check_threads(bench["threads"], "bench.threads")
        for key in ("batch", "repeats"):
            if key in bench and bench[key] < 1:
                raise ConfigError(f"bench.{key}={bench[key]} is invalid: it must be >= 1")
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    recipe = dict(data.get("recipe") or {})
    if "seed" in recipe and (not isinstance(recipe["seed"], int) or isinstance(recipe["seed"], bool)):
        raise ConfigError(f"{path}: recipe.seed must be an int, got {recipe['seed']!r}")
    seeds = _seeds(data.get("seeds", 1), int(recipe.pop("seed", 0)), str(path))
    entries = _entries(data.get("entries"), dict(data.get("defaults") or {}), str(path))
    labels = [e["label"] for e in entries]
    claims = _claims(data.get("claims"), labels, str(path))
    if only is not None:
        keep = [s.strip() for s in only.split(",") if s.strip()]
        missing = [o for o in keep if o not in labels]
        if missing:
            raise ConfigError(f"only={','.join(missing)}: no such entry.{suggest(missing[0], labels)}")
        entries = [e for e in entries if e["label"] in keep]
        claims = [c for c in claims if c["a"] in keep and c["b"] in keep]
    if not entries:
        raise ConfigError(f"{path}: no entries to compare")
    title = str(data.get("title") or f"hiermlp compare: {path.stem}")
    jobs = parse_jobs(data.get("jobs", 1), str(path))
    return ComparePreset(title, recipe, entries, bench, str(path), seeds, claims, jobs)
