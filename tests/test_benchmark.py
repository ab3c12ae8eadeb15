"""The benchmark times two models of ours in one run (``--against``), so their speeds compare under one load."""

import torch

from helpers.commands import main
from helpers.study import benchmark
from helpers.training.candidates import candidate
from helpers.training.shipping import shipped


def test_against_times_a_second_checkpoint_beside_ours(tmp_path):
    torch.manual_seed(0)
    other = tmp_path / "other.pth.tar"
    torch.save(shipped(candidate("base", (0.002, 0.02)).eval(), "other"), other)
    small = benchmark.run(n_small=1, large=False, codecs=("ours",), against=other)["small"].set_index("codec")
    assert list(small.index) == ["ours", "against"]
    # Each row is its own model: an untrained one writes other files than the shipped one.
    assert small.loc["ours", "bpp"] != small.loc["against", "bpp"]


def test_an_unknown_codec_is_a_one_line_error(capsys):
    assert main(["benchmark", "--codecs", "ours", "heic", "--no-large"]) == 2
    assert "unknown codec heic" in capsys.readouterr().err
