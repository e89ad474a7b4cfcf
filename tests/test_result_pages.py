"""The committed result pages are what benchmarks/make_results.py renders from the committed JSON reports."""

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def make_results(monkeypatch):
    spec = importlib.util.spec_from_file_location("make_results", ROOT / "benchmarks" / "make_results.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "make_results", module)  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def test_committed_pages_are_the_rendered_ones(make_results):
    rendered = make_results.pages()
    results = ROOT / "benchmarks" / "results"
    every_dir = {p / "README.md" for p in results.iterdir() if p.is_dir()}
    assert set(rendered) == every_dir | {ROOT / "benchmarks" / "README.md"}
    stale = [str(p.relative_to(ROOT)) for p, text in rendered.items() if p.read_text() != text]
    assert not stale, f"{stale} differ from what `python benchmarks/make_results.py --pages` renders"


def test_a_page_follows_its_json(make_results, tmp_path, monkeypatch):
    """Change the numbers of a report and its page says the new ones: the page is rendered, not written."""
    results = tmp_path / "results"
    shutil.copytree(make_results.RESULTS / "compare_default", results / "compare_default")
    report = results / "compare_default" / "compare.json"
    d = json.loads(report.read_text())
    d["wall_s"] = 61.0 * 60
    d["findings"] = ["- a finding the intervals support"]
    d["rows"][0]["top1"].update(mean=12.345, std=0.5)
    report.write_text(json.dumps(d))
    monkeypatch.setattr(make_results, "RESULTS", results)
    page = make_results.render_page("compare_default")
    assert "took 61.0 min" in page and "- a finding the intervals support" in page
    assert f"**{d['rows'][0]['label']}**" in page and "| 12.35 ± 0.50 |" in page
    assert "9.6 min" not in page  # the committed report's time is gone with it


def test_a_result_directory_without_a_page_is_an_error(make_results, tmp_path, monkeypatch):
    (tmp_path / "results" / "new_measurement").mkdir(parents=True)
    monkeypatch.setattr(make_results, "RESULTS", tmp_path / "results")
    with pytest.raises(SystemExit, match="new_measurement"):
        make_results.pages()
