"""benchmarks/regenerate.py: one command rewrites BENCHMARKS.md's measured tables between their markers."""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import regenerate  # noqa: E402


def test_every_section_has_its_markers_in_benchmarks_md():
    text = (ROOT / "BENCHMARKS.md").read_text()
    for name in regenerate.SECTIONS:
        regenerate.replace_section(text, name, "")  # raises where the markers are missing


def test_a_section_is_rerun_between_its_markers_and_the_prose_is_kept(tmp_path):
    path = tmp_path / "BENCHMARKS.md"
    path.write_text("# B\n\nwhy it matters\n<!-- regenerate: demo -->\nold table\n<!-- /regenerate: demo -->\nafter\n")
    block = regenerate.run_section("demo", "python -c \"print('| a |')\"")
    text = regenerate.replace_section(path.read_text(), "demo", block)
    assert "old table" not in text and "why it matters" in text and text.endswith("after\n")
    assert "    python -c \"print('| a |')\"\n\n_Regenerated " in text and "threads" in text and "| a |\n<!--" in text


def test_missing_markers_and_failing_commands_are_named(tmp_path):
    with pytest.raises(ValueError, match="no '<!-- regenerate: latency -->'"):
        regenerate.replace_section("no markers here", "latency", "")
    with pytest.raises(RuntimeError, match="section demo: .* failed"):
        regenerate.run_section("demo", "python -c \"raise SystemExit(3)\"")
    with pytest.raises(SystemExit, match=r"unknown sections \['latncy'\]"):
        regenerate.main(["--sections", "latncy"])


def test_edits_made_while_a_section_runs_are_kept(tmp_path, monkeypatch):
    path = tmp_path / "BENCHMARKS.md"
    path.write_text("why it matters\n<!-- regenerate: demo -->\nold table\n<!-- /regenerate: demo -->\n")
    edit = (f"import pathlib; p = pathlib.Path(r'{path}'); p.write_text(p.read_text().replace('why', 'edited: why'));"
            " print('| a |')")
    monkeypatch.setitem(regenerate.SECTIONS, "demo", (f'python -c "{edit}"', 1, None))
    regenerate.main(["--sections", "demo", "--benchmarks_md", str(path)])
    text = path.read_text()
    assert text.startswith("edited: why it matters\n") and "| a |\n<!--" in text and "old table" not in text
