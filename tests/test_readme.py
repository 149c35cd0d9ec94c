from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands():
    return [line.strip() for line in (ROOT / "README.md").read_text().splitlines() if line.startswith("    ")][:2]


def test_ci_runs_exactly_the_readme_test_command():
    main_job, tests = readme_commands()
    assert "pytest" in tests and "pytest" not in main_job
    assert (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1] == tests
