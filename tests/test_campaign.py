"""The campaign's committed weights: what a session on a new machine resumes from."""

import dataclasses

import pytest
import torch

from helpers.experiments import campaign
from helpers.training.config import TINY_RECIPE, TrainConfig, learning_rate
from helpers.training.runs import load_training_checkpoint
from helpers.training.state import build_state, save_state


@pytest.fixture
def run_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(campaign, "RUN", tmp_path)
    monkeypatch.setattr(campaign, "WEIGHTS", tmp_path / "weights_fp16.pt")
    return tmp_path


def _trained_state(run_dir):
    """A tiny model whose parameters moved away from their initial values, saved as a run's resumable state."""
    cfg = TrainConfig.from_dict(TINY_RECIPE)
    st = build_state(cfg, None, None, 0, torch.device("cpu"))
    with torch.no_grad():
        for p in st.model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    st.step = 1234
    save_state(st, run_dir / "last.pth.tar", 1, 0)
    return st


def test_committed_weights_resume_with_exact_buffers(run_dir):
    st = _trained_state(run_dir)
    campaign.export()
    (run_dir / "last.pth.tar").unlink()  # a new machine: only the committed weights are left
    campaign._from_committed_weights()
    resumed = load_training_checkpoint(run_dir / "last.pth.tar")
    assert resumed["step"] == 1234 and resumed["config"]["warm_from"] == 1234
    buffers = dict(st.model.named_buffers())
    for name, value in st.model.state_dict().items():
        got = resumed["model"][name]
        if name in buffers:  # bounds such as the 1e-9 likelihood floor must survive (float16 made them 0)
            assert torch.equal(got, value), name
        else:  # parameters are float16 in git: within its rounding
            torch.testing.assert_close(got, value, rtol=1e-3, atol=1e-4)


def test_fresh_optimiser_warms_up_again():
    cfg = TrainConfig(steps=1000, lr=1e-3, warmup_steps=10, decay_start=0.5, warm_from=100)
    assert learning_rate(cfg, 100) == pytest.approx(1e-4)
    assert learning_rate(cfg, 109) == pytest.approx(1e-3)
    late = dataclasses.replace(cfg, warm_from=700)
    assert learning_rate(late, 700) == pytest.approx(0.1 * learning_rate(cfg, 700))


def test_weights_written_before_the_fix_resume_with_the_models_own_buffers(run_dir):
    st = _trained_state(run_dir)
    old_style = {k: v.half() if v.is_floating_point() and not k.endswith("lambdas") else v
                 for k, v in st.model.state_dict().items()}  # fmt: skip
    torch.save({"model": old_style, "config": st.cfg.__dict__, "step": st.step}, campaign.WEIGHTS)
    (run_dir / "last.pth.tar").unlink()
    campaign._from_committed_weights()
    resumed = load_training_checkpoint(run_dir / "last.pth.tar")["model"]
    for name, value in st.model.named_buffers():
        assert torch.equal(resumed[name], value), name
    torch.testing.assert_close(resumed["gain.log"], st.model.gain.log.detach(), rtol=1e-3, atol=1e-4)


def test_train_moves_the_schedule_when_asked(run_dir, monkeypatch):
    _trained_state(run_dir)
    calls = []
    monkeypatch.setattr(campaign, "train", lambda run, **kw: calls.append(kw["overrides"]))
    campaign.main(["train", "--minutes", "1", "--steps", "150000", "--decay-start", "0.5"])
    campaign.main(["train", "--minutes", "1"])
    assert calls == [{"steps": 150000, "decay_start": 0.5}, {}]


def _fake_run(root, name, bpp_scale, steps, sec_per_step):
    """A run folder with a validation log (the same PSNR per level, bits scaled) and a training log."""
    import numpy as np
    import pandas as pd

    (root / name).mkdir()
    bpp = np.geomspace(0.03, 1.5, 8)
    val = [{"step": s, "level": i + 1, "bpp": b * bpp_scale, "psnr": 22 + 4 * np.log2(b / 0.03) + s / 1000,
            "ms_ssim": 0.9} for s in steps for i, b in enumerate(bpp)]  # fmt: skip
    pd.DataFrame(val).to_csv(root / name / "val_log.csv", index=False)
    log = [{"step": s, "sec_per_step": sec_per_step} for s in range(500, max(steps) + 1, 500)]
    pd.DataFrame(log).to_csv(root / name / "train_log.csv", index=False)


def test_equal_steps_compares_two_runs_only_where_both_validated(tmp_path, monkeypatch):
    monkeypatch.setattr(campaign, "RUNS", tmp_path)
    _fake_run(tmp_path, "v3", 1.0, [1000, 2000, 3000], 0.36)
    _fake_run(tmp_path, "other", 1.1, [1000, 2000], 0.72)
    table = campaign.equal_steps("other", "v3")
    assert list(table.step) == [1000, 2000]
    assert table.bd_psnr_pct.tolist() == pytest.approx([10.0, 10.0], abs=0.01)  # 10 % more bits, same PSNR
    assert table.hours_other.tolist() == pytest.approx(
        [0.2, 0.4]
    ) and table.hours_v3.tolist() == pytest.approx([0.1, 0.2])


def test_another_runs_weights_are_exported_into_its_own_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(campaign, "RUNS", tmp_path)
    monkeypatch.setattr(campaign, "WEIGHTS", tmp_path / "v3" / "weights_fp16.pt")
    (tmp_path / "other").mkdir()
    st = _trained_state(tmp_path / "other")
    campaign.export("other")
    saved = torch.load(tmp_path / "other" / "weights_fp16.pt", weights_only=False)
    assert saved["step"] == st.step and not (tmp_path / "v3").exists()
    assert {v.dtype for k, v in saved["model"].items() if k in dict(st.model.named_parameters())} == {
        torch.float16
    }
