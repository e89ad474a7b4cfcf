"""The README and docs/ as checked claims: their code runs verbatim and prints what it says, the design drawing is
the package, the design grep finds nothing, and every path, link and dotted ``hiermlp`` name they give exists.

No test here pins prose to a recorded measurement: the result pages are rendered from their JSON reports
(tests/test_result_pages.py), so numbers live there.
"""

import importlib
import re
import shlex
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [README, *DOCS]


def section(text: str, title: str) -> str:
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else None]


def blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, flags=re.S)


def marked_blocks(text: str) -> list[str]:
    """The python blocks marked ``<!-- tested -->``: run verbatim, in order, in one namespace."""
    return re.findall(r"<!-- tested -->\n```python\n(.*?)```", text, flags=re.S)


def printed_claims(code: str) -> list[str]:
    """``print(...)  # comment`` lines: the comment says what the line prints."""
    return re.findall(r"^print\(.*\)[ \t]+#[ \t]*(.*)$", code, flags=re.M)


@pytest.fixture
def clean_mixers():
    from hiermlp.mixers import MIXERS

    before = dict(MIXERS)
    yield
    MIXERS.clear()
    MIXERS.update(before)


def run_verbatim(codes: list[str], where: Path, capsys) -> dict:
    namespace: dict = {}
    claims = []
    for code in codes:
        exec(compile(code, str(where), "exec"), namespace)
        claims += printed_claims(code)
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == len(claims), (printed, claims)
    for line, claim in zip(printed, claims):
        assert line in claim, f"{where.name}: prints {line!r}, its comment says {claim!r}"
    return namespace


def test_readme_mixer_template_runs_verbatim(clean_mixers, capsys):
    (code,) = blocks(section(README.read_text(), "Adding a mixer"), "python")
    assert len(code.strip().splitlines()) <= 35  # a template a reader can take in at once
    namespace = run_verbatim([code], README, capsys)
    blocks_ = namespace["model"].stages[0].blocks
    assert type(blocks_[0].mixer).__name__ == "WindowConv" and blocks_[0].mixer.conv.kernel_size == (5, 5)
    assert blocks_[1].shift_mode == "pad"  # honours_mask = False: the block shifts by zero padding


@pytest.mark.parametrize("page", [p for p in PAGES if marked_blocks(p.read_text())], ids=lambda p: p.name)
def test_tested_blocks_run_verbatim(page, clean_mixers, capsys):
    namespace = run_verbatim(marked_blocks(page.read_text()), page, capsys)
    if page.name == "extending.md":  # the network from one dict is what its comments say
        block = namespace["net"].stages[0].blocks[0]
        assert block.norm_placement == "res_post" and type(block.mixer).__name__ == "AxialShift"


def test_quick_start_info_output_is_what_the_command_prints(capsys):
    from hiermlp.cli import main

    (shown,) = re.findall(r"```\n\$ hiermlp info (\S+)\n(.*?)```", README.read_text(), flags=re.S)
    name, want = shown
    assert main(["info", name]) == 0
    assert capsys.readouterr().out == want


def test_design_drawing_names_every_package_and_module():
    design = (ROOT / "docs" / "design.md").read_text()
    (tree,) = re.findall(r"```\nhiermlp/\n(.*?)\nconfigs/", section(design, "The house"), flags=re.S)
    rows = [line.split() for line in tree.splitlines() if line.startswith("  ") and line[2] != " "]
    listed = {w.rstrip("/") for row in rows for w in row if re.fullmatch(r"\w+/", w)}
    packages = {p.parent.name for p in (ROOT / "hiermlp").glob("*/__init__.py")}
    assert packages == listed, (sorted(packages - listed), sorted(listed - packages))
    modules = [w for row in rows for w in row if re.fullmatch(r"\w+\.py", w)]
    missing = [m for m in modules if not (ROOT / "hiermlp" / m).is_file()]
    assert modules and not missing, missing


def test_design_grep_finds_no_speed_machinery_in_the_plain_modules():
    (cmd,) = blocks(
        section((ROOT / "docs" / "design.md").read_text(), "The speed layer stays out of the plain modules"), "bash"
    )
    greps = cmd.strip().splitlines()
    assert greps and all(f"hiermlp/{p}" in greps[0] for p in ("ops", "layers", "mixers", "models"))
    for grep in greps:
        out = subprocess.run(["bash", "-c", grep], cwd=ROOT, capture_output=True, text=True)
        assert out.returncode == 1 and out.stdout == "", out.stdout  # grep: 1 = no match


REPO_PATH = re.compile(r"`((?:hiermlp|tests|benchmarks|configs|docs)/[\w./-]*\w)`")
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_paths_and_links_exist(page):
    text = page.read_text()
    paths = [p for p in REPO_PATH.findall(text) if not re.search(r"[A-Z]{3,}", p)]  # NAME, PRESET: placeholders
    missing = [p for p in paths if not (ROOT / p).exists()]
    missing += [
        link for link in LINK.findall(text) if not re.match(r"[a-z]+://", link) and not (page.parent / link).exists()
    ]
    assert not missing, f"{page.relative_to(ROOT)} names paths that do not exist: {missing}"


def dotted_names(text: str) -> set[str]:
    """Every ``hiermlp.a.b`` a page names in code, and every name it imports ``from hiermlp.a import b``."""
    code = " ".join(re.findall(r"`[^`\n]+`", text) + blocks(text, "python") + blocks(text, "bash"))
    names = set(re.findall(r"\bhiermlp(?:\.\w+)+", code))
    for module, items in re.findall(r"from (hiermlp(?:\.\w+)*) import ([\w, ]+)", code):
        names |= {f"{module}.{item.strip()}" for item in items.split(",") if item.strip()}
    return names


def resolves(name: str) -> bool:
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_dotted_names_resolve(page):
    names = dotted_names(page.read_text())
    missing = sorted(n for n in names if not resolves(n))
    assert not missing, f"{page.relative_to(ROOT)} names what hiermlp does not have: {missing}"


def hiermlp_commands(text: str) -> list[list[str]]:
    """The argv of every ``hiermlp ...`` (or ``torchrun ... -m hiermlp ...``) line of a page's bash blocks."""
    out = []
    for block in blocks(text, "bash"):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            while words and re.fullmatch(r"\w+=\S*", words[0]):  # HIERMLP_ACCEL=0 hiermlp ...
                words = words[1:]
            if words[:1] == ["hiermlp"]:
                out.append(words[1:])
            elif words[:1] == ["torchrun"] and "hiermlp" in words:
                out.append(words[words.index("hiermlp") + 1 :])
    return out


@pytest.mark.parametrize("page", [p for p in PAGES if hiermlp_commands(p.read_text())], ids=lambda p: p.name)
def test_commands_parse(page, capsys):
    """Every command a page shows names a subcommand and options the CLI has (parsed, not run)."""
    from hiermlp.cli import build_parser

    parser = build_parser()
    for argv in hiermlp_commands(page.read_text()):
        try:
            parser.parse_args(argv)
        except SystemExit:
            pytest.fail(f"{page.name}: `hiermlp {shlex.join(argv)}` does not parse: {capsys.readouterr().err}")
