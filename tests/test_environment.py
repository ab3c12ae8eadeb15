"""The conda/Colab environment and the pip requirements must pin the same versions."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _pins(lines):
    return {line.split("==")[0].lower(): line.split("==")[1] for line in lines if "==" in line}


def test_environment_yml_matches_requirements():
    reqs = [
        ln.strip() for ln in (ROOT / "requirements.txt").read_text().splitlines() if not ln.startswith("#")
    ]
    env = [ln.strip().removeprefix("- ") for ln in (ROOT / "environment.yml").read_text().splitlines()]
    assert _pins(reqs), "requirements.txt pins nothing"
    assert _pins(env) == _pins(reqs)
