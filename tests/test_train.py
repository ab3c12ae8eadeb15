"""The training engine: exact resume, atomic checkpoints, schedule, and DistributedDataParallel on gloo."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from helpers.codec.errors import CheckpointError
from helpers.training.candidates import candidate, is_derived
from helpers.training.config import TINY_RECIPE, TrainConfig, learning_rate, resolve_config
from helpers.training.loop import retrain, train
from helpers.training.loss import LPIPS_WEIGHT, RateDistortionLoss
from helpers.training.model_setup import build_model, fine_tune_state
from helpers.training.precision import cpu_precision
from helpers.training.runs import (
    atomic_save,
    load_training_checkpoint,
    run_stages,
    stage_logs,
    training_hours,
)
from helpers.training.shipping import shipped
from helpers.training.state import build_state

DATA_DIR = os.environ.get("DATA_DIR")
needs_data = pytest.mark.skipif(not DATA_DIR or not Path(DATA_DIR).is_dir(), reason="needs DATA_DIR")
TINY = TINY_RECIPE


def test_learning_rate_schedule():
    cfg = TrainConfig(steps=100, lr=1e-3, min_lr=1e-5, warmup_steps=10, decay_start=0.5)
    assert learning_rate(cfg, 0) == pytest.approx(1e-4)
    assert learning_rate(cfg, 30) == 1e-3
    assert learning_rate(cfg, 75) == pytest.approx(0.5 * (1e-3 + 1e-5), rel=1e-6)
    assert learning_rate(cfg, 100) == pytest.approx(1e-5)


def test_atomic_save_keeps_old_file_when_interrupted(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pth.tar"
    atomic_save({"model": {}, "config": {}, "step": 1}, path)

    def broken_save(obj, f):
        f.write(b"half a checkpoint")
        raise KeyboardInterrupt  # killed mid-write

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(KeyboardInterrupt):
        atomic_save({"step": 2}, path)
    monkeypatch.undo()
    assert load_training_checkpoint(path)["step"] == 1


def test_load_checkpoint_errors(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_training_checkpoint(tmp_path / "missing.pth.tar")
    (tmp_path / "junk.pth.tar").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_training_checkpoint(tmp_path / "junk.pth.tar")
    torch.save({"weights": 1}, tmp_path / "other.pth.tar")
    with pytest.raises(CheckpointError, match="not a leaf-codec checkpoint"):
        load_training_checkpoint(tmp_path / "other.pth.tar")


@needs_data
def test_resume_continues_exactly(tmp_path):
    straight = train(tmp_path / "a", None, TINY, data_root=DATA_DIR, progress=False)
    train(tmp_path / "b", None, TINY, data_root=DATA_DIR, max_steps_this_call=2, progress=False)
    assert load_training_checkpoint(tmp_path / "b" / "last.pth.tar")["step"] == 2
    resumed = train(tmp_path / "b", None, data_root=DATA_DIR, progress=False)
    a, b = load_training_checkpoint(straight), load_training_checkpoint(resumed)
    assert a["step"] == b["step"] == 4
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    log = (tmp_path / "b" / "train_log.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in log[1:]] == ["1", "2", "3", "4"]


@needs_data
def test_resume_after_a_kill_logs_each_step_once(tmp_path):
    train(tmp_path, None, TINY, data_root=DATA_DIR, max_steps_this_call=2, progress=False)
    # A run killed between checkpoints has logged steps the checkpoint does not hold.
    with open(tmp_path / "train_log.csv") as f:
        killed_row = f.read().splitlines()[-1].replace("2,", "3,", 1)
    with open(tmp_path / "train_log.csv", "a") as f:
        f.write(killed_row + "\n")
    train(tmp_path, None, data_root=DATA_DIR, progress=False)
    log = (tmp_path / "train_log.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in log[1:]] == ["1", "2", "3", "4"]
    assert log[3] != killed_row  # step 3 was trained again, not kept from the killed run
    val_keys = [tuple(row.split(",")[:2]) for row in (tmp_path / "val_log.csv").read_text().splitlines()[1:]]
    assert len(val_keys) == len(set(val_keys))  # one validation row per (step, level)


def test_fine_tune_state_maps_gains_onto_new_levels():
    trained = build_model(TrainConfig(N=8, M=4, lambdas=(1e-3, 4e-3, 1.6e-2)))
    with torch.no_grad():
        trained.gain.log.copy_(torch.tensor([[-2.0], [0.0], [1.0]]).repeat(1, 4))
        trained.inv_gain.log.copy_(-trained.gain.log)
    new = build_model(TrainConfig(N=8, M=4, lambdas=(2.5e-4, 1e-3, 2e-3, 4e-3, 1.6e-2, 6.4e-2)))
    state = fine_tune_state(trained.state_dict(), new)
    new.load_state_dict(state)
    # Each lambda step is a factor 4 (2 for the 2e-3 level, half a step in log-lambda).
    expected = torch.tensor([-4.0, -2.0, -1.0, 0.0, 1.0, 2.0])
    assert torch.allclose(new.gain.log[:, 0], expected) and torch.allclose(new.inv_gain.log[:, 0], -expected)
    assert torch.equal(new.lambdas, torch.tensor((2.5e-4, 1e-3, 2e-3, 4e-3, 1.6e-2, 6.4e-2)))
    for key in ("g_a.0.weight", "latent_codec.hyper.h_s.0.weight"):
        assert torch.equal(new.state_dict()[key], trained.state_dict()[key])
    unordered = {**trained.state_dict(), "lambdas": torch.tensor([4e-3, 1e-3, 1.6e-2])}
    with pytest.raises(CheckpointError, match="not increasing"):
        fine_tune_state(unordered, new)


@needs_data
def test_fine_tuned_run_records_its_stages(tmp_path):
    base = train(tmp_path / "base", None, TINY, data_root=DATA_DIR, progress=False)
    lambdas = TrainConfig().lambdas
    tuned = {**TINY, "lambdas": [lambdas[0] / 4, *lambdas], "steps": 2}
    train(tmp_path / "tuned", None, tuned, data_root=DATA_DIR, init_from=base, progress=False)
    assert run_stages(tmp_path / "tuned") == [tmp_path / "base", tmp_path / "tuned"]
    train_log, val_log = stage_logs(tmp_path / "tuned")
    assert train_log.step.tolist() == [1, 2, 3, 4, 5, 6]
    assert train_log.stage.tolist() == ["base"] * 4 + ["tuned"] * 2
    assert training_hours(train_log) > 0
    # The base run's levels are renumbered to the tuned run's, where a new level 1 was added below them.
    first = val_log[val_log.step == 2]
    assert first.level.tolist() == list(range(2, len(lambdas) + 2))
    assert val_log[val_log.step == 6].level.tolist() == list(range(1, len(lambdas) + 2))


@needs_data
def test_retrain_reruns_every_stage_in_order(tmp_path):
    base = train(tmp_path / "base", None, TINY, data_root=DATA_DIR, progress=False)
    train(tmp_path / "tuned", None, {**TINY, "steps": 2}, data_root=DATA_DIR, init_from=base, progress=False)
    last = retrain(tmp_path / "tuned", tmp_path / "again", {"steps": 1}, data_root=DATA_DIR)
    assert last == tmp_path / "again" / "tuned" / "last.pth.tar"
    assert run_stages(tmp_path / "again" / "tuned") == [
        tmp_path / "again" / "base",
        tmp_path / "again" / "tuned",
    ]
    assert [load_training_checkpoint(p / "last.pth.tar")["step"] for p in run_stages(last.parent)] == [
        1,
        1,
    ]


@needs_data
def test_fine_tuning_the_shipped_checkpoint_keeps_its_architecture(tmp_path):
    from helpers import paths

    small = {k: v for k, v in TINY.items() if k not in ("N", "M")} | {"steps": 1}
    last = train(tmp_path / "ft", None, small, data_root=DATA_DIR, init_from=paths.SHIPPED_CHECKPOINT,
                       progress=False)  # fmt: skip
    shipped = torch.load(paths.SHIPPED_CHECKPOINT, weights_only=True)
    config = load_training_checkpoint(last)["config"]
    assert (config["N"], config["M"], list(config["lambdas"])) == tuple(
        shipped["config"][k] for k in ("N", "M", "lambdas")
    )
    assert config["init_from"] == "outputs/checkpoints/leaf_hyperprior.pth.tar"
    with pytest.raises(CheckpointError, match="does not fit this run's architecture: size mismatch"):
        train(tmp_path / "wrong", None, TINY, data_root=DATA_DIR, init_from=paths.SHIPPED_CHECKPOINT,
                    progress=False)  # fmt: skip


@needs_data
def test_resume_refuses_to_change_the_recipe(tmp_path):
    train(tmp_path, None, TINY, data_root=DATA_DIR, max_steps_this_call=1, progress=False)
    with pytest.raises(ValueError, match="cannot change lr"):
        train(tmp_path, None, {"lr": 0.1}, data_root=DATA_DIR, progress=False)


@needs_data
@pytest.mark.slow
def test_distributed_data_parallel_on_gloo(tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    sets = [a for k, v in TINY.items() for a in ("--set", f"{k}={v if not isinstance(v, str) else repr(v)}")]
    sets = [s.replace("'", '"') for s in sets]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DATA_DIR": DATA_DIR}
    proc = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "helpers", "train",
                           str(tmp_path / "ddp"), *sets], capture_output=True, text=True, env=env, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    ckpt = load_training_checkpoint(tmp_path / "ddp" / "last.pth.tar")
    assert ckpt["world_size"] == 2 and ckpt["step"] == 4 and len(ckpt["rng"]) == 2


def test_lpips_weighs_in_the_distortion_at_each_level(one_torch_thread):
    """beta * LPIPS sits inside lambda's bracket, as in the paper's lambda_R * R + D: its weight scales with the
    level's lambda."""
    from helpers.measures.metrics import lpips_network

    torch.manual_seed(0)
    x = torch.rand(2, 3, 64, 64)
    out = {
        "x_hat": (x + 0.1 * torch.randn_like(x)).clamp(0, 1),
        "likelihoods": {"y": torch.full((2, 8, 4, 4), 0.5)},
    }
    lam = torch.tensor([0.001, 0.1])
    plain = RateDistortionLoss(TrainConfig())(out, x, lam)["loss"]
    tuned = RateDistortionLoss(TrainConfig(beta=0.5))(out, x, lam)["loss"]
    lp = lpips_network()(out["x_hat"] * 2 - 1, x * 2 - 1).flatten()
    assert float(tuned - plain) == pytest.approx(float((lam * 0.5 * LPIPS_WEIGHT * lp).mean()), rel=1e-4)


def test_a_run_fine_tuned_from_the_shipped_checkpoint_lists_the_shipped_run_as_its_stages(tmp_path):
    import json

    from helpers import paths

    (tmp_path / "config.json").write_text(
        json.dumps({"init_from": "outputs/checkpoints/leaf_hyperprior.pth.tar"})
    )
    assert run_stages(tmp_path) == [*run_stages(paths.SHIPPED_RUN), tmp_path]
    assert paths.SHIPPED_RUN in run_stages(tmp_path)


def test_cpu_precision_is_measured_and_leaves_the_weights_alone(one_torch_thread):
    cfg = TrainConfig(**{**TINY, "precision": "auto"})
    st = build_state(cfg, None, None, 0, torch.device("cpu"))
    before = {k: v.clone() for k, v in st.model.state_dict().items()}
    choice = cpu_precision(st, reps=1)
    assert choice["precision"] in ("fp32", "bf16") and choice["cpu"]
    assert choice[f"{choice['precision']}_s"] == min(choice["fp32_s"], choice["bf16_s"])
    after = st.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.grad is None for p in st.model.parameters())


@needs_data
def test_a_deadline_stops_the_run_at_a_resumable_checkpoint(tmp_path):
    overrides = {**TINY, "steps": 50, "checkpoint_every": 100}
    ckpt = train(tmp_path, None, overrides, data_root=DATA_DIR, progress=False, deadline=0.0)
    state = load_training_checkpoint(ckpt)
    assert state["step"] == 1  # one step, then the deadline (long past) stops it, with a checkpoint


def test_a_shipped_candidate_fine_tunes_as_itself_and_a_misfit_is_refused(tmp_path):
    """A shipped composed model records its candidate's name, not a training arch: fine-tuning it must build that
    candidate (not today's architecture with its entropy model silently dropped), and loading its weights into
    a model with no place for them is an error."""
    torch.manual_seed(0)
    source = tmp_path / "channel.pth.tar"
    torch.save(shipped(candidate("channel", (0.002, 0.02)).eval(), "tiny-channel"), source)
    cfg, _, init = resolve_config(tmp_path / "ft", None, {}, source)
    assert cfg.arch == "channel"
    loaded = build_state(cfg, None, init, 0, torch.device("cpu")).model.state_dict()
    trained = {k: v for k, v in init["model"].items() if not is_derived(k)}
    assert trained and all(torch.equal(loaded[k], v) for k, v in trained.items())
    cfg, _, init = resolve_config(tmp_path / "misfit", None, {"arch": "base"}, source)
    with pytest.raises(CheckpointError, match="have no place in it"):
        build_state(cfg, None, init, 0, torch.device("cpu"))
