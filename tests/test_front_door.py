"""One front door: every command of the product and of the study is a subcommand of ``python -m helpers``."""

import re

import pytest
from codec_samples import run_cli

from helpers import paths
from helpers.commands import STUDY_COMMANDS

COMMANDS = ["manifest", "train", "compress", "decompress", "info", "export-checkpoint", "fetch", "run-notebooks",
            "metrics", "benchmark", *STUDY_COMMANDS]  # fmt: skip


def test_help_lists_every_command():
    proc = run_cli("--help")
    assert proc.returncode == 0, proc.stderr
    listed = proc.stdout.split("options:")[0]
    assert all(f"    {name} " in listed for name in COMMANDS), listed


@pytest.mark.parametrize("name", list(STUDY_COMMANDS))
def test_each_study_command_answers_its_own_help(name):
    proc = run_cli(name, "--help")
    assert proc.returncode == 0, proc.stderr
    assert f"python -m helpers {name}" in proc.stdout


def test_a_study_command_keeps_its_one_line_errors():
    proc = run_cli("campaign", "no-such-step")
    assert proc.returncode == 2 and "invalid choice" in proc.stderr


def test_every_command_the_readme_names_is_one_the_front_door_accepts():
    """``python -m helpers NAME [SUB|SUB...]`` in the README: NAME is listed by --help, and each SUB of a study
    command is one of the choices its own --help names."""
    readme = (paths.ROOT / "README.md").read_text()
    uses = set(re.findall(r"python -m helpers ([a-z][a-z-]*)(?: ([a-z][a-z|-]*))?", readme))
    assert {"compress", "bakeoff", "campaign"} <= {name for name, _ in uses}  # the pattern reads the README
    for name, subs in uses:
        assert name in COMMANDS, f"the README's `python -m helpers {name}` is not a command"
        if name in STUDY_COMMANDS and subs:
            own = run_cli(name, "--help").stdout
            missing = [s for s in subs.split("|") if not re.search(rf"[{{,]{s}[,}}]", own)]
            assert not missing, f"the README's `{name} {subs}`: {missing} not in `{name} --help`"
