"""One front door: every command of the product and of the study is a subcommand of ``python -m helpers``."""

import pytest
from codec_samples import run_cli

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
