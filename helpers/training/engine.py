"""Training engine: rate-distortion loss, CPU/GPU mixed precision, atomic checkpoints, exact resume, DDP.

Loss per image at quality level k (CompressAI convention, lambda on the distortion):

    L_k = R + lambda_k * [ (1 - alpha) * 255^2 * MSE + alpha * MSSSIM_WEIGHT * (1 - MS-SSIM)
                           + beta * LPIPS_WEIGHT * LPIPS ]

The paper writes the same trade-off as lambda_R * R + D, with every distortion term (LPIPS included) in D; the two
are equal up to scale with lambda = 1/lambda_R. LPIPS therefore sits inside the bracket, so the balance between
pixel fidelity and perceptual distance is the same at every quality level.
Each image in a batch draws its own level, so one run trains every quality level of the gain-unit model.

Run with ``python -m helpers train RUN_DIR`` (single process) or
``torchrun --nproc_per_node 2 -m helpers train RUN_DIR`` (DistributedDataParallel; gloo on CPU, nccl on GPU).
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from helpers import paths
from helpers.codec.errors import CheckpointError
from helpers.codec.hyperprior import LeafHyperprior
from helpers.codec.models import DEFAULT_LAMBDAS, CodingModel, load_error_detail
from helpers.data.dataset import load_array, photo_pyramid, photo_split, read_manifest, split_paths
from helpers.study.tables import relative_name
from helpers.training.candidates import CANDIDATES, candidate, from_leaf_state, is_derived, widen_state
from helpers.training.runs import (  # noqa: F401  (run_config .. training_hours: the run-folder API, re-exported for callers)
    append_csv,
    atomic_save,
    drop_log_rows_after,
    load_training_checkpoint,
    run_config,
    run_stages,
    stage_logs,
    training_hours,
)

MSSSIM_WEIGHT = 2000.0  # brings (1 - MS-SSIM) to the scale of 255^2 * MSE at typical operating points
LPIPS_WEIGHT = 1000.0  # likewise for LPIPS-alex (about 0.15 where 255^2 * MSE is about 130, i.e. 27 dB)


@dataclass
class TrainConfig:
    arch: str = (
        "leaf"  # "leaf" (the shipped LeafHyperprior) or a codec v2 candidate of helpers.training.candidates
    )
    N: int = 64
    M: int = 128
    lambdas: tuple = DEFAULT_LAMBDAS
    ste_synthesis: bool = True  # synthesis sees rounded latents (straight-through) rather than noisy ones
    alpha: float = 0.0  # MS-SSIM share of the distortion (0: PSNR-optimised codec)
    beta: float = 0.0  # LPIPS weight, times LPIPS_WEIGHT, inside the distortion (0: no perceptual term)
    steps: int = 24000
    batch_size: int = 16
    crop: int = 128
    lr: float = 1e-3  # the seed's 1e-4 does not converge in a CPU budget (see README)
    min_lr: float = 1e-5
    decay_start: float = 0.75  # fraction of steps at constant lr before the cosine decay to min_lr
    warmup_steps: int = 200
    warm_from: int = 0  # step the warmup counts from: a run resumed with a fresh optimiser warms up again
    aux_lr: float = 1e-3
    clip_grad: float = 1.0
    precision: str = "auto"  # auto: fp16+GradScaler on CUDA, bf16 autocast on CPU; or fp32
    channels_last: bool = True
    checkpoint_every: int = 500
    log_every: int = 50
    val_every: int = 1000
    val_images: int = 24
    train_images: int | None = None  # limit (smoke runs)
    photo_share: float = 0.0  # fraction of each batch cropped from natural photos at 1x, 1/2x, 1/4x scale
    seed: int = 0
    init_from: str | None = None  # checkpoint this run was fine-tuned from (set by ``train``; repo-relative)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        if "lambdas" in known:
            known["lambdas"] = tuple(known["lambdas"])
        return cls(**known)


# A run of seconds that still uses every part of the engine (tests, and notebook 02 in the smoke profile).
TINY_RECIPE = {"N": 8, "M": 8, "steps": 4, "batch_size": 2, "crop": 64, "train_images": 4, "val_images": 2,
               "val_every": 2, "checkpoint_every": 2, "log_every": 1, "warmup_steps": 1, "precision": "fp32"}  # fmt: skip

RESUME_OVERRIDABLE = ("steps", "decay_start", "min_lr", "checkpoint_every", "log_every", "val_every")


def learning_rate(cfg: TrainConfig, step: int) -> float:
    # Fresh Adam moments take large steps at first, so the rate ramps up from the step they were created at.
    ramp = min(1.0, (step - cfg.warm_from + 1) / max(1, cfg.warmup_steps))
    start = int(cfg.decay_start * cfg.steps)
    if step < start:
        return cfg.lr * ramp
    t = min(1.0, (step - start) / max(1, cfg.steps - start))
    return ramp * (cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * t)))


def build_model(cfg: TrainConfig) -> CodingModel:
    """The untrained model of a run: the shipped architecture, or a bake-off candidate by name."""
    if cfg.arch != "leaf":
        return candidate(cfg.arch, cfg.lambdas)
    model = LeafHyperprior(cfg.N, cfg.M, cfg.lambdas)
    model.ste_synthesis = cfg.ste_synthesis
    return model


def _log_gains_at(old_log_lambdas: torch.Tensor, old_log_gains: torch.Tensor, log_lambdas: torch.Tensor):
    """Per-channel log-gains at new log-lambdas: piecewise-linear in log-lambda through the old levels,
    extended linearly beyond the first and last ones."""
    i = torch.searchsorted(old_log_lambdas, log_lambdas).clamp(1, len(old_log_lambdas) - 1)
    x0, x1 = old_log_lambdas[i - 1], old_log_lambdas[i]
    t = ((log_lambdas - x0) / (x1 - x0))[:, None]
    return old_log_gains[i - 1] + t * (old_log_gains[i] - old_log_gains[i - 1])


def fine_tune_state(state: dict, model: LeafHyperprior) -> dict:
    """``state`` (a trained model's weights) made loadable into ``model`` for fine-tuning.

    The transforms and entropy models carry over unchanged (into a wider candidate: widened, computing what they
    did; ``candidates.widen_state``). When ``model`` has other quality levels (other
    lambdas) than ``state``, its gain vectors start where the trained ones point: interpolated over log-lambda
    between trained levels, extrapolated beyond them (e.g. to add a lower-rate level)."""
    state = dict(state)
    old = state["lambdas"].double()
    new = model.lambdas.double()
    if not torch.equal(old, new):
        if len(old) < 2 or not bool((old.diff() > 0).all()):
            raise CheckpointError("cannot map quality levels: the trained lambdas are not increasing")
        for key in ("log_gain", "log_inv_gain", "gain.log", "inv_gain.log"):
            if key in state:
                state[key] = _log_gains_at(old.log(), state[key].double(), new.log()).float()
        state["lambdas"] = model.lambdas.clone()
    if not isinstance(model, LeafHyperprior):
        if "h_a.0.weight" in state:
            state = from_leaf_state(state)
        state = widen_state(state, model)  # a wider candidate starts as the narrower model, exactly
    return state


# ----- distributed helpers --------------------------------------------------------------------------------
def _dist_setup() -> tuple[int, int]:
    if "RANK" in os.environ and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _device(rank: int) -> torch.device:
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", rank))
        torch.cuda.set_device(local % torch.cuda.device_count())
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


# ----- loss -----------------------------------------------------------------------------------------------
class RateDistortionLoss(nn.Module):
    def __init__(self, cfg: TrainConfig):
        super().__init__()
        self.alpha, self.beta = cfg.alpha, cfg.beta
        self.lpips = None
        if self.beta > 0:
            from helpers.study.metrics import lpips_network

            self.lpips = lpips_network()

    def forward(self, out: dict, x: torch.Tensor, lam: torch.Tensor) -> dict:
        n, _, h, w = x.shape
        bpp = estimated_bpp(out["likelihoods"], h * w)
        x_hat = out["x_hat"]
        mse = ((x_hat - x) ** 2).flatten(1).mean(1)
        dist_ = (1 - self.alpha) * 255**2 * mse
        if self.alpha > 0:
            from pytorch_msssim import ms_ssim

            # Five scales need >160 px; smaller crops drop the coarsest scale(s).
            scales = 5 if min(h, w) > 160 else 4
            weights = [0.0448, 0.2856, 0.3001, 0.2363, 0.1333][:scales]
            msssim = ms_ssim(x_hat.clamp(0, 1), x, data_range=1.0, size_average=False, weights=weights)
            dist_ = dist_ + self.alpha * MSSSIM_WEIGHT * (1 - msssim)
        if self.lpips is not None:
            lp = self.lpips(x_hat.float() * 2 - 1, x * 2 - 1).flatten()
            dist_ = dist_ + self.beta * LPIPS_WEIGHT * lp
        loss = bpp + lam * dist_
        return {"loss": loss.mean(), "bpp": bpp.detach(), "mse": mse.detach()}


class TrainStep(nn.Module):
    """Model + aux loss in one forward so DDP synchronises the entropy bottleneck's quantiles too."""

    def __init__(self, model: LeafHyperprior):
        super().__init__()
        self.model = model

    def forward(self, x, level):
        out = self.model(x, level)
        out["aux"] = self.model.aux_loss()
        return out


# ----- batches ----------------------------------------------------------------------------------------------
class CropSampler:
    """Random crops + flips from an in-memory uint8 array: no worker processes, so both CPU cores train."""

    def __init__(self, images: np.ndarray, crop: int, batch_size: int, generator: torch.Generator):
        self.images = torch.from_numpy(np.ascontiguousarray(images))
        self.crop, self.batch_size, self.g = crop, batch_size, generator

    def __call__(self) -> torch.Tensor:
        n, _, h, w = self.images.shape
        idx = torch.randint(n, (self.batch_size,), generator=self.g)
        ys = torch.randint(h - self.crop + 1, (self.batch_size,), generator=self.g)
        xs = torch.randint(w - self.crop + 1, (self.batch_size,), generator=self.g)
        flips = torch.rand(self.batch_size, 2, generator=self.g) < 0.5
        out = []
        for i, y, x, f in zip(idx.tolist(), ys.tolist(), xs.tolist(), flips.tolist()):
            c = self.images[i, :, y : y + self.crop, x : x + self.crop]
            if f[0]:
                c = c.flip(-1)
            if f[1]:
                c = c.flip(-2)
            out.append(c)
        return torch.stack(out).float().div_(255)


class PhotoCropSampler:
    """Random crops + flips from photos of different sizes (a list of uint8 (3, H, W) tensors)."""

    def __init__(self, images: list[torch.Tensor], crop: int, batch_size: int, generator: torch.Generator):
        self.images = [im for im in images if min(im.shape[1:]) >= crop]
        self.crop, self.batch_size, self.g = crop, batch_size, generator

    def __call__(self) -> torch.Tensor:
        out = []
        for _ in range(self.batch_size):
            im = self.images[int(torch.randint(len(self.images), (1,), generator=self.g))]
            y = int(torch.randint(im.shape[1] - self.crop + 1, (1,), generator=self.g))
            x = int(torch.randint(im.shape[2] - self.crop + 1, (1,), generator=self.g))
            c = im[:, y : y + self.crop, x : x + self.crop]
            flips = (torch.rand(2, generator=self.g) < 0.5).tolist()
            c = c.flip(-1) if flips[0] else c
            out.append(c.flip(-2) if flips[1] else c)
        return torch.stack(out).float().div_(255)


class MixedSampler:
    """A batch of PlantVillage crops followed by photo crops."""

    def __init__(self, *samplers):
        self.samplers = [s for s in samplers if s.batch_size > 0]

    def __call__(self) -> torch.Tensor:
        return torch.cat([s() for s in self.samplers])


# ----- checkpoints ------------------------------------------------------------------------------------------
def _rng_state(g: torch.Generator) -> dict:
    return {
        "torch": torch.get_rng_state(),
        "sampler": g.get_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def _set_rng_state(state: dict, g: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    g.set_state(state["sampler"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ----- validation -------------------------------------------------------------------------------------------
def estimated_bpp(likelihoods: dict, pixels: int) -> torch.Tensor:
    """Per-image ideal code length of every latent (sum of -log2 likelihoods) per pixel: the training rate."""
    return sum(-torch.log2(v).flatten(1).sum(1) for v in likelihoods.values()) / pixels


def psnr_db(mse: torch.Tensor) -> torch.Tensor:
    return 10 * torch.log10(1 / mse.clamp_min(1e-10))


@torch.no_grad()
def validate(model: LeafHyperprior, images: torch.Tensor, device) -> list[dict]:
    """Per-level estimated bpp (from the likelihoods of rounded latents), PSNR and MS-SSIM."""
    from pytorch_msssim import ms_ssim

    model.eval()
    rows = []
    x = images.to(device).float().div(255)
    for k in range(model.num_levels):
        out = model(x, torch.full((x.shape[0],), k, device=device, dtype=torch.long))
        x_hat = out["x_hat"].clamp(0, 1)
        mse = ((x_hat - x) ** 2).flatten(1).mean(1)
        rows.append({"level": k + 1, "bpp": estimated_bpp(out["likelihoods"], x[0, 0].numel()).mean().item(),
                     "psnr": psnr_db(mse).mean().item(),
                     "ms_ssim": ms_ssim(x_hat, x, data_range=1.0, size_average=True).item()})  # fmt: skip
    model.train()
    return rows


# ----- precision on CPU: measured, not assumed -------------------------------------------------------------
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def _pass_seconds(model: nn.Module, x: torch.Tensor, level: torch.Tensor, dtype) -> float:
    """One forward + backward of the training loss's main terms (no optimiser step: the weights stay as they are)."""
    t0 = time.perf_counter()
    with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
        out = model(x, level)
    bpp = estimated_bpp(out["likelihoods"], x.shape[2] * x.shape[3]).sum()
    (bpp + out["x_hat"].float().square().sum()).backward()
    model.zero_grad(set_to_none=True)
    return time.perf_counter() - t0


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
    times = {"fp32": [], "bf16": []}
    for i in range(reps + 1):
        for name, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
            t = _pass_seconds(st.model, x, level, dtype)
            if i:  # the first of each is a warm-up
                times[name].append(t)
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


# ----- the run: config, state, data, one step, log ---------------------------------------------------------
def resolve_config(run_dir: Path, cfg, overrides, init_from):
    """The run's recipe and the checkpoints it starts from: ``(cfg, resume, init)``. A resumed run keeps its
    recipe (only RESUME_OVERRIDABLE fields may change); a fine-tuning run without a config keeps the
    architecture and levels of the weights it starts from."""
    last = Path(run_dir) / "last.pth.tar"
    overrides = dict(overrides or {})
    if last.exists():
        resume = load_training_checkpoint(last)
        fixed = sorted(set(overrides) - set(RESUME_OVERRIDABLE))
        if fixed:
            raise ValueError(f"cannot change {', '.join(fixed)} when resuming {run_dir}")
        return TrainConfig.from_dict({**resume["config"], **overrides}), resume, None
    init = load_training_checkpoint(init_from) if init_from is not None else None
    arch_keys = ("arch", "N", "M", "lambdas")
    inherited = {k: v for k, v in init["config"].items() if k in arch_keys} if init else {}
    if init and init.get("architecture") == "composed":  # a shipped candidate names itself, not its arch
        inherited["arch"] = init["config"].get("name")
        if inherited["arch"] not in CANDIDATES:
            raise CheckpointError(f"{init_from}: its model {inherited['arch']!r} is not a known candidate")
    base = asdict(cfg) if cfg is not None else {**asdict(TrainConfig()), **inherited}
    cfg = TrainConfig.from_dict({**base, **overrides})
    cfg.init_from = relative_name(Path(init_from).resolve()) if init_from is not None else None
    return cfg, None, init


def _load_fine_tune_source(model: CodingModel, state: dict, source: str) -> None:
    """``state`` loaded into ``model`` to fine-tune it. Weights ``model`` lacks (new context networks) keep their
    initialisation, but a trained weight with no place in ``model`` means another architecture: refused, since
    dropping it would train a silently different model."""
    try:
        result = model.load_state_dict(fine_tune_state(state, model), strict=False)
    except RuntimeError as exc:
        raise CheckpointError(
            f"{source} does not fit this run's architecture: {load_error_detail(exc)}"
        ) from None
    dropped = [k for k in result.unexpected_keys if not is_derived(k)]
    if dropped:
        more = f" and {len(dropped) - 1} more" if len(dropped) > 1 else ""
        raise CheckpointError(
            f"{source} does not fit this run's architecture: its {dropped[0]}{more} have no place in it"
        )


@dataclass
class TrainState:
    cfg: TrainConfig
    model: nn.Module
    optimizer: torch.optim.Optimizer
    aux_optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    amp_dtype: torch.dtype | None
    generator: torch.Generator
    device: torch.device
    step: int = 0

    @property
    def main_params(self):
        return self.optimizer.param_groups[0]["params"]


def resolved_precision(cfg: TrainConfig, device: torch.device) -> str:
    """fp16, bf16 or fp32. "auto" is fp16 on CUDA; on a CPU it starts as fp32 and train() then measures bf16
    against it on this machine (cpu_precision)."""
    return cfg.precision if cfg.precision != "auto" else ("fp16" if device.type == "cuda" else "fp32")


def build_state(cfg: TrainConfig, resume, init, rank: int, device) -> TrainState:
    """Model, optimisers and RNGs, seeded, then loaded from the resumed run or the fine-tuning source."""
    torch.manual_seed(cfg.seed + rank)
    np.random.seed(cfg.seed + rank)
    random.seed(cfg.seed + rank)
    g = torch.Generator().manual_seed(cfg.seed * 1000 + rank)
    model = build_model(cfg).to(device)
    if resume is None and init is not None:
        _load_fine_tune_source(model, init["model"], cfg.init_from)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    aux = [p for n, p in model.named_parameters() if n.endswith(".quantiles")]
    main = [p for n, p in model.named_parameters() if not n.endswith(".quantiles")]
    # The same mixed precision on every device, only device and dtype differ: float16 autocast always with a
    # GradScaler (tests/test_mixed_precision.py runs CUDA's fp16 path on the CPU).
    precision = resolved_precision(cfg, device)
    st = TrainState(cfg, model, torch.optim.Adam(main, lr=cfg.lr), torch.optim.Adam(aux, lr=cfg.aux_lr),
                    torch.amp.GradScaler(device.type, enabled=precision == "fp16"),
                    {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision), g, device)  # fmt: skip
    if resume is not None:
        model.load_state_dict(resume["model"])
        st.optimizer.load_state_dict(resume["optimizer"])
        st.aux_optimizer.load_state_dict(resume["aux_optimizer"])
        # Empty from a run without fp16 (e.g. one begun on a CPU, resumed on a GPU): a fresh scale, not an error.
        if resume["scaler"]:
            st.scaler.load_state_dict(resume["scaler"])
        st.step = resume["step"]
        _set_rng_state(resume["rng"][min(rank, len(resume["rng"]) - 1)], g)
    return st


def build_data(cfg: TrainConfig, data_root: Path, manifest: Path, g: torch.Generator, progress: bool):
    """The batch sampler (PlantVillage crops, plus photo crops when ``photo_share`` > 0) and validation images."""
    records = read_manifest(manifest)
    cache_tag = f"{manifest.stem}_{cfg.train_images or 'all'}"
    train_arr = load_array(split_paths(records, "train", data_root, cfg.train_images),
                           cache=paths.CACHE / f"train_{cache_tag}.npy", progress=progress)  # fmt: skip
    val_arr = torch.from_numpy(
        load_array(split_paths(records, "val", data_root, cfg.val_images), progress=False)
    )
    n_photo = round(cfg.photo_share * cfg.batch_size)
    sampler = CropSampler(train_arr, cfg.crop, cfg.batch_size - n_photo, g)
    if n_photo:
        photos = PhotoCropSampler(photo_pyramid(photo_split("train")), cfg.crop, n_photo, g)
        sampler = MixedSampler(sampler, photos)
    return sampler, val_arr


def train_step(st: TrainState, net: nn.Module, loss_fn: RateDistortionLoss, sampler) -> dict:
    """One optimisation step on one batch (each image at its own random level); returns scalar statistics."""
    cfg, device = st.cfg, st.device
    for group in st.optimizer.param_groups:
        group["lr"] = learning_rate(cfg, st.step)
    x = sampler().to(device, non_blocking=True)
    if cfg.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    level = torch.randint(st.model.num_levels, (x.shape[0],), generator=st.generator).to(device)
    with torch.autocast(device.type, dtype=st.amp_dtype or torch.float32, enabled=st.amp_dtype is not None):
        out = net(x, level)
    losses = loss_fn(out, x, st.model.lambdas[level])
    st.optimizer.zero_grad(set_to_none=True)
    st.aux_optimizer.zero_grad(set_to_none=True)
    st.scaler.scale(losses["loss"] + out["aux"]).backward()
    if cfg.clip_grad:
        st.scaler.unscale_(st.optimizer)
        nn.utils.clip_grad_norm_(st.main_params, cfg.clip_grad)
    st.scaler.step(st.optimizer)
    st.scaler.step(st.aux_optimizer)
    st.scaler.update()
    st.step += 1
    return {"loss": losses["loss"].item(), "bpp": losses["bpp"].mean().item(),
            "psnr": psnr_db(losses["mse"]).mean().item(), "aux": out["aux"].item()}  # fmt: skip


class RunLog:
    """Averages step statistics over ``log_every`` steps into train_log.csv (rank 0 only), with timing."""

    def __init__(self, run_dir: Path, cfg: TrainConfig, end: int, enabled: bool):
        self.path, self.cfg, self.end, self.enabled = Path(run_dir) / "train_log.csv", cfg, end, enabled
        self._reset()

    def _reset(self) -> None:
        self.sums, self.n, self.t0 = {}, 0, time.time()

    def add(self, step: int, stats: dict) -> dict | None:
        for k, v in stats.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
        self.n += 1
        if step % self.cfg.log_every and step != self.end:
            return None
        row = {"step": step, "lr": learning_rate(self.cfg, step - 1), **{k: v / self.n for k, v in self.sums.items()},
               "sec_per_step": (time.time() - self.t0) / self.n}  # fmt: skip
        if self.enabled:
            append_csv(self.path, row)
        self._reset()
        return row


def save_state(st: TrainState, path: Path, world: int, rank: int) -> None:
    """Everything needed to continue exactly: weights, both optimisers, the grad scaler, the step, every RNG."""
    rngs = [None] * world
    state = _rng_state(st.generator)
    if world > 1:
        dist.all_gather_object(rngs, state)
    else:
        rngs = [state]
    if rank == 0:
        atomic_save({
            "model": st.model.state_dict(), "optimizer": st.optimizer.state_dict(),
            "aux_optimizer": st.aux_optimizer.state_dict(), "scaler": st.scaler.state_dict(),
            "step": st.step, "rng": rngs, "config": asdict(st.cfg), "world_size": world,
        }, path)  # fmt: skip


def train(run_dir: Path, cfg: TrainConfig | None = None, overrides: dict | None = None, data_root: Path | None = None,
          manifest: Path = paths.MANIFEST, max_steps_this_call: int | None = None, init_from: Path | None = None,
          progress: bool = True, deadline: float | None = None) -> Path:  # fmt: skip
    """Train (or resume) the run in ``run_dir``; returns the path of its latest checkpoint.

    ``overrides`` are TrainConfig fields set on top of ``cfg`` (on resume, only RESUME_OVERRIDABLE ones).
    ``init_from`` starts a new run from another checkpoint's weights (fine-tuning). ``max_steps_this_call``
    stops early (the schedule still spans ``cfg.steps``); so does ``deadline`` (a ``time.time()``), with a
    checkpoint at the step it stops.
    """
    from tqdm.auto import tqdm

    run_dir = Path(run_dir)
    rank, world = _dist_setup()
    device = _device(rank)
    cfg, resume, init = resolve_config(run_dir, cfg, overrides, init_from)
    st = build_state(cfg, resume, init, rank, device)
    if resume is not None and rank == 0:  # rows logged after the checkpoint by a killed run are logged again
        for log_name in ("train_log.csv", "val_log.csv"):
            drop_log_rows_after(run_dir / log_name, st.step)
    root = Path(data_root) if data_root is not None else paths.data_dir()
    sampler, val_arr = build_data(cfg, root, manifest, st.generator, progress and rank == 0)
    net = TrainStep(st.model)
    if world > 1:
        net = nn.parallel.DistributedDataParallel(
            net, device_ids=[device.index] if device.type == "cuda" else None
        )
    loss_fn = RateDistortionLoss(cfg).to(device)
    run_dir.mkdir(parents=True, exist_ok=True)
    if rank == 0:
        (run_dir / "config.json").write_text(json.dumps(asdict(cfg), indent=2, default=list))
    resolve_precision(st, run_dir, log=rank == 0)
    end = cfg.steps if max_steps_this_call is None else min(cfg.steps, st.step + max_steps_this_call)
    log = RunLog(run_dir, cfg, end, enabled=rank == 0)
    bar = tqdm(total=end, initial=st.step, desc="train", disable=not progress or rank != 0, mininterval=5)
    net.train()
    while st.step < end:
        if deadline is not None and time.time() >= deadline:
            end = log.end = st.step + 1  # a session's time is up: this step is the last, logged and saved
        row = log.add(st.step + 1, train_step(st, net, loss_fn, sampler))
        bar.update(1)
        if row is not None:
            bar.set_postfix(loss=f"{row['loss']:.3f}", bpp=f"{row['bpp']:.3f}", psnr=f"{row['psnr']:.2f}")
        if rank == 0 and (st.step % cfg.val_every == 0 or st.step == end):
            for vrow in validate(st.model, val_arr, device):
                append_csv(run_dir / "val_log.csv", {"step": st.step, **vrow})
        if st.step % cfg.checkpoint_every == 0 or st.step == end:
            save_state(st, run_dir / "last.pth.tar", world, rank)
    bar.close()
    if world > 1:
        dist.barrier()
    return run_dir / "last.pth.tar"


def retrain(
    run_dir: Path, out_root: Path, overrides: dict | None = None, data_root: Path | None = None
) -> Path:
    """Train every stage of ``run_dir`` again from scratch into ``out_root/<stage>``, in order, each stage
    fine-tuned from the previous one's result; returns the last stage's checkpoint."""
    previous = None
    for stage in run_stages(run_dir):
        stage_cfg = TrainConfig.from_dict(run_config(stage))
        previous = train(
            Path(out_root) / stage.name, stage_cfg, overrides, data_root=data_root, init_from=previous
        )
    return previous
