"""Which arithmetic a run trains in: fp16 with a GradScaler on CUDA; on a CPU, bfloat16 autocast only where this
machine runs it faster than float32, measured rather than assumed (``cpu_precision``), and noted in the run's
``machines.csv``. ``alternate_seconds`` is the one timer of such comparisons."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from helpers.training.config import TrainConfig
from helpers.training.loss import estimated_bpp
from helpers.training.runs import append_csv

if TYPE_CHECKING:
    from helpers.training.state import TrainState


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def alternate_seconds(
    calls: dict[str, Callable[[], object]], rounds: int, warmup: int = 1
) -> dict[str, list]:
    """Seconds each call took in each of ``rounds`` rounds, the calls taking turns within a round (so load from
    elsewhere hits them alike); the first ``warmup`` rounds only warm up."""
    times = {name: [] for name in calls}
    for i in range(warmup + rounds):
        for name, call in calls.items():
            t0 = time.perf_counter()
            call()
            if i >= warmup:
                times[name].append(time.perf_counter() - t0)
    return times


def _forward_backward(model: nn.Module, x: torch.Tensor, level: torch.Tensor, dtype) -> None:
    """One forward + backward of the training loss's main terms (no optimiser step: the weights stay as they are)."""
    with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
        out = model(x, level)
    bpp = estimated_bpp(out["likelihoods"], x.shape[2] * x.shape[3]).sum()
    (bpp + out["x_hat"].float().square().sum()).backward()
    model.zero_grad(set_to_none=True)


def cpu_precision(st: TrainState, reps: int = 2) -> dict:
    """Times float32 against bfloat16 autocast for this run's model and batch on this CPU, alternately (so load
    from elsewhere hits both alike), and returns the faster one. bf16 is fast only where the CPU has native
    bf16 arithmetic; an AVX2-only AMD EPYC ran it 7x slower than float32."""
    cfg = st.cfg
    g = torch.Generator().manual_seed(0)  # its own generator: the run's random stream stays as it was
    x = torch.rand(cfg.batch_size, 3, cfg.crop, cfg.crop, generator=g)
    if cfg.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    level = torch.randint(st.model.num_levels, (cfg.batch_size,), generator=g)
    times = alternate_seconds({name: lambda dtype=dtype: _forward_backward(st.model, x, level, dtype)
                               for name, dtype in (("fp32", None), ("bf16", torch.bfloat16))}, reps)  # fmt: skip
    best = {k: min(v) for k, v in times.items()}
    return {"cpu": cpu_model(), "threads": torch.get_num_threads(), "fp32_s": round(best["fp32"], 3),
            "bf16_s": round(best["bf16"], 3), "precision": min(best, key=best.get)}  # fmt: skip


def resolve_precision(st: TrainState, run_dir: Path, log: bool) -> None:
    """Settles ``precision="auto"`` on CPU by measurement and notes machine and choice in machines.csv."""
    if st.cfg.precision != "auto" or st.device.type != "cpu":
        return
    choice = cpu_precision(st)
    st.amp_dtype = torch.bfloat16 if choice["precision"] == "bf16" else None
    if log:
        append_csv(
            run_dir / "machines.csv", {"time": time.strftime("%Y-%m-%d %H:%M"), "step": st.step, **choice}
        )
    print(f"precision: {choice['precision']} on {choice['cpu']} (forward+backward: fp32 {choice['fp32_s']} s, "
          f"bf16 {choice['bf16_s']} s)", flush=True)  # fmt: skip


def resolved_precision(cfg: TrainConfig, device: torch.device) -> str:
    """fp16, bf16 or fp32. "auto" is fp16 on CUDA; on a CPU it starts as fp32 and train() then measures bf16
    against it on this machine (cpu_precision)."""
    return cfg.precision if cfg.precision != "auto" else ("fp16" if device.type == "cuda" else "fp32")
