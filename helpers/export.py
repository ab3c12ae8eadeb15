"""Export of the codec's four transforms to TorchScript and ONNX, parity checks, and an ONNX Runtime decoder.

What is exported (``outputs/export/<part>.pt`` and ``<part>.onnx``, batch/height/width dynamic, ONNX opset 17):

* ``g_a(x, level) -> y``: analysis *including* the quality level's gain. ``level`` is a 0-based int64 tensor of
  shape (1,); the gain vectors are constants inside the graph, so one file serves every level and the
  exported graph computes exactly what ``LeafHyperprior.analyse`` does (``g_a(x) * exp(log_gain[level])``).
* ``h_a(y) -> z``: hyper-analysis (float32).
* ``h_s(z_hat) -> params``: hyper-synthesis in **float64**, its output the raw (means, scales) parameters.
  The decoder turns them into the scale indexes that select rANS tables, so they must match the encoder's
  bit-for-bit (see ``LeafHyperprior.hyper_synthesis``). ONNX Runtime has no float64 Conv/ConvTranspose
  kernels, so the ONNX ``h_s`` writes each convolution as a sum of shifted float64 matrix products
  (``_HyperSynthesis64``; transposed convolutions via their sub-pixel phases). It agrees with PyTorch's float64
  ``h_s`` to ~1e-13, far below the 1/256 grid of the means and the ~13% spacing of the scale table.
* ``g_s(y_hat, level) -> x_hat``: synthesis including the level's inverse gain and the final clamp to [0, 1].

``OnnxTransforms`` runs ``h_s`` and ``g_s`` in ONNX Runtime behind the same two methods the PyTorch model offers
(``hyper_synthesis``, ``synthesise``), so ``LeafCodec(backend="onnx")`` decodes with ORT while entropy decoding
stays in CompressAI's rANS. Encoding always uses PyTorch: a file does not depend on the backend that decodes it.
ORT's float32 convolutions differ from PyTorch's in the last bits, so the two backends' pixels may differ by
one grey level in rare places (``PIXEL_TOLERANCE``, enforced by tests/test_export.py).
"""

from __future__ import annotations

import contextlib
import copy
import io
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from compressai.layers import GDN
from torch import nn

from . import paths
from .errors import CheckpointError, CodecError
from .model import STRIDE, LeafHyperprior, single_thread

EXPORT_DIR = paths.OUTPUTS / "export"
PARTS = ("g_a", "h_a", "h_s", "g_s")
OPSET = 17
PIXEL_TOLERANCE = 1  # max |ORT - PyTorch| decoded pixel difference the tests accept (grey levels)
ORT_THREADS = 1  # like PyTorch's coding path (model.single_thread): results must not depend on the machine


# ----- exportable modules -------------------------------------------------------------------------------------
class _FrozenGDN(nn.Module):
    """GDN with its reparametrised beta/gamma computed once: CompressAI's LowerBound is a Python autograd
    Function that torch.jit.trace cannot record. Same values as GDN's forward computes on every call."""

    def __init__(self, gdn: GDN):
        super().__init__()
        c = gdn.beta.numel()
        self.inverse = gdn.inverse
        self.register_buffer("beta", gdn.beta_reparam(gdn.beta).detach().clone())
        self.register_buffer("gamma", gdn.gamma_reparam(gdn.gamma).detach().reshape(c, c, 1, 1).clone())

    def forward(self, x):
        norm = F.conv2d(x**2, self.gamma, self.beta)
        return x * (torch.sqrt(norm) if self.inverse else torch.rsqrt(norm))


def _frozen(seq: nn.Sequential) -> nn.Sequential:
    return nn.Sequential(*(_FrozenGDN(m) if isinstance(m, GDN) else copy.deepcopy(m) for m in seq))


class _Analysis(nn.Module):
    def __init__(self, model: LeafHyperprior):
        super().__init__()
        self.g_a = _frozen(model.g_a)
        self.register_buffer("gain", model.log_gain.detach().exp())

    def forward(self, x: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
        return self.g_a(x) * self.gain[level].reshape(1, -1, 1, 1)


class _Synthesis(nn.Module):
    def __init__(self, model: LeafHyperprior):
        super().__init__()
        self.g_s = _frozen(model.g_s)
        self.register_buffer("inv_gain", model.log_inv_gain.detach().exp())

    def forward(self, y_hat: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
        return self.g_s(y_hat * self.inv_gain[level].reshape(1, -1, 1, 1)).clamp(0, 1)


def _taps(x: torch.Tensor, weights, offsets_h, offsets_w, pad: tuple[int, int]) -> torch.Tensor:
    """sum over taps of x[a + dh, b + dw] @ W_tap for NHWC ``x``: a convolution without a Conv operator."""
    lo, hi = pad
    x = F.pad(x, (0, 0, lo, hi, lo, hi))
    out = None
    for (i, dh), (j, dw) in ((a, b) for a in enumerate(offsets_h) for b in enumerate(offsets_w)):
        # Static (possibly negative) slice bounds keep height and width dynamic in the exported graph.
        part = x[:, dh + lo : (dh - hi) or None, dw + lo : (dw - hi) or None, :] @ weights[i][j]
        out = part if out is None else out + part
    return out


def _interleave(phases: list[list[torch.Tensor]]) -> torch.Tensor:
    """Depth-to-space for NHWC phases: ``phases[r][c]`` holds output pixels (s*a + r, s*b + c)."""
    rows = [torch.stack(row, dim=3).flatten(2, 3) for row in phases]
    return torch.stack(rows, dim=2).flatten(1, 2)


class _Conv64(nn.Module):
    """A stride-1 Conv2d in float64 as shifted matrix products (ORT has no float64 Conv kernel)."""

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        k, p = conv.kernel_size[0], conv.padding[0]
        assert conv.stride == (1, 1) and conv.kernel_size == (k, k) and conv.padding == (p, p)
        w = conv.weight.detach().double()  # (out, in, k, k)
        self.k, self.p = k, p
        self.register_buffer("w", w.permute(2, 3, 1, 0).contiguous())  # (k, k, in, out)
        self.register_buffer("b", conv.bias.detach().double())

    def forward(self, x):
        offs = [t - self.p for t in range(self.k)]
        return _taps(x, self.w, offs, offs, (self.p, self.k - 1 - self.p)) + self.b


class _ConvTranspose64(nn.Module):
    """A ConvTranspose2d in float64 via its sub-pixel phases: output pixel s*a + r collects the taps t with
    t = (r + p) mod s + s*m, reading input a + (r + p - t) / s. No zeros are inserted, so no work is wasted."""

    def __init__(self, deconv: nn.ConvTranspose2d):
        super().__init__()
        k, s, p, op = deconv.kernel_size[0], deconv.stride[0], deconv.padding[0], deconv.output_padding[0]
        assert deconv.kernel_size == (k, k) and deconv.stride == (s, s) and deconv.padding == (p, p)
        assert -2 * p + k + op - s == 0, "only output size = stride x input size is supported"
        self.s = s
        self.taps = [[t for t in range(k) if (t - r - p) % s == 0] for r in range(s)]  # taps of phase r
        self.offs = [[(r + p - t) // s for t in taps] for r, taps in enumerate(self.taps)]
        flat = [d for o in self.offs for d in o]
        self.pad = (max(0, -min(flat)), max(0, max(flat)))
        w = deconv.weight.detach().double()  # (in, out, k, k)
        self.register_buffer("w", w.permute(2, 3, 0, 1).contiguous())  # (k, k, in, out)
        self.register_buffer("b", deconv.bias.detach().double())

    def forward(self, x):
        phases = [[_taps(x, [[self.w[th, tw] for tw in self.taps[c]] for th in self.taps[r]],
                         self.offs[r], self.offs[c], self.pad) for c in range(self.s)]
                  for r in range(self.s)]  # fmt: skip
        return _interleave(phases) + self.b


class _LeakyReLU64(nn.Module):
    # ONNX's LeakyRelu stores its slope as a float32 attribute (0.01 -> 0.0099999998), off by 2e-10 relative
    # from PyTorch's float64 slope; a Where with a float64 product keeps the whole graph in float64.
    def __init__(self, act: nn.LeakyReLU):
        super().__init__()
        self.slope = act.negative_slope

    def forward(self, x):
        return torch.where(x >= 0, x, x * self.slope)


class _HyperSynthesis64(nn.Module):
    """``model.h_s`` in float64 from MatMul/Slice/Pad/Where only, on NCHW input and output."""

    def __init__(self, h_s: nn.Sequential):
        super().__init__()
        layers = []
        for layer in h_s:
            if isinstance(layer, nn.ConvTranspose2d):
                layers.append(_ConvTranspose64(layer))
            elif isinstance(layer, nn.Conv2d):
                layers.append(_Conv64(layer))
            elif isinstance(layer, nn.LeakyReLU):
                layers.append(_LeakyReLU64(layer))
            else:
                raise TypeError(f"no float64 ONNX form for {type(layer).__name__}")
        self.layers = nn.Sequential(*layers)

    def forward(self, z_hat):
        return self.layers(z_hat.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def export_modules(model: LeafHyperprior, onnx: bool = False) -> dict[str, nn.Module]:
    """The four parts as standalone modules (eval mode). ``h_s`` is float64: PyTorch's own layers for
    TorchScript, the MatMul form for ONNX (``onnx=True``)."""
    h_s = _HyperSynthesis64(model.h_s) if onnx else copy.deepcopy(model.h_s).double()
    mods = {"g_a": _Analysis(model), "h_a": copy.deepcopy(model.h_a), "h_s": h_s, "g_s": _Synthesis(model)}
    for m in mods.values():
        m.eval()
        for p in m.parameters():
            p.requires_grad_(False)
    return mods


def example_inputs(model: LeafHyperprior, part: str, height: int = 256, width: int = 256, level: int = 0):
    """Inputs of the right shape and dtype for tracing one part (an image of ``height`` x ``width``)."""
    h, w = height // 16, width // 16
    lvl = torch.tensor([level], dtype=torch.int64)
    g = torch.Generator().manual_seed(0)
    if part == "g_a":
        return torch.rand(1, 3, height, width, generator=g), lvl
    if part == "h_a":
        return (torch.randn(1, model.M, h, w, generator=g) * 4,)
    if part == "h_s":
        return (torch.randint(-4, 5, (1, model.N, h // 4, w // 4), generator=g).double(),)
    return torch.randint(-4, 5, (1, model.M, h, w), generator=g).float(), lvl


INPUT_NAMES = {"g_a": ["x", "level"], "h_a": ["y"], "h_s": ["z_hat"], "g_s": ["y_hat", "level"]}
OUTPUT_NAMES = {"g_a": ["y"], "h_a": ["z"], "h_s": ["params"], "g_s": ["x_hat"]}


# ----- writing the exports ------------------------------------------------------------------------------------
@contextlib.contextmanager
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TorchScript / legacy-exporter deprecation notices
        yield


def onnx_bytes(model: LeafHyperprior, part: str, weights_sha256: str, opset: int = OPSET) -> bytes:
    """One part as an ONNX model (legacy TorchScript-based exporter), tagged with the weights it came from."""
    import onnx

    module = export_modules(model, onnx=True)[part]
    args = example_inputs(model, part)
    first = INPUT_NAMES[part][0]
    dynamic = {
        first: {0: "batch", 2: "height", 3: "width"},
        OUTPUT_NAMES[part][0]: {0: "batch", 2: "h", 3: "w"},
    }
    buf = io.BytesIO()
    with _quiet(), torch.no_grad():
        torch.onnx.export(module, args, buf, dynamo=False, opset_version=opset, input_names=INPUT_NAMES[part],
                          output_names=OUTPUT_NAMES[part], dynamic_axes=dynamic)  # fmt: skip
    proto = onnx.load_from_string(buf.getvalue())
    meta = {"part": part, "weights_sha256": weights_sha256, "N": str(model.N), "M": str(model.M),
            "levels": str(model.num_levels), "level_input": "0-based int64, shape (1,)"}  # fmt: skip
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.producer_name = "leaf-codec-study"
    return proto.SerializeToString()


def _atomic_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def export_onnx(model: LeafHyperprior, weights_sha256: str, out_dir: Path = EXPORT_DIR) -> dict[str, Path]:
    """Write ``<part>.onnx`` for the four parts and validate each with ``onnx.checker.check_model``."""
    import onnx

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    for part in PARTS:
        data = onnx_bytes(model, part, weights_sha256)
        onnx.checker.check_model(onnx.load_from_string(data), full_check=True)
        _atomic_bytes(out_dir / f"{part}.onnx", data)
        written[part] = out_dir / f"{part}.onnx"
    return written


def export_torchscript(model: LeafHyperprior, out_dir: Path = EXPORT_DIR) -> dict[str, Path]:
    """Write ``<part>.pt`` (torch.jit.trace; load with ``torch.jit.load``)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    for part, module in export_modules(model).items():
        buf = io.BytesIO()
        with _quiet(), torch.no_grad():
            torch.jit.save(torch.jit.trace(module, example_inputs(model, part)), buf)
        _atomic_bytes(out_dir / f"{part}.pt", buf.getvalue())
        written[part] = out_dir / f"{part}.pt"
    return written


def load_torchscript(path: Path):
    with _quiet():
        return torch.jit.load(str(path)).eval()


def file_sizes(out_dir: Path = EXPORT_DIR, checkpoint: Path | None = None) -> list[dict]:
    rows = []
    if checkpoint is not None:
        rows.append({"file": Path(checkpoint).name, "bytes": Path(checkpoint).stat().st_size})
    for suffix in (".pt", ".onnx"):
        for part in PARTS:
            p = Path(out_dir) / f"{part}{suffix}"
            if p.is_file():
                rows.append({"file": p.name, "bytes": p.stat().st_size})
    for r in rows:
        r["MB"] = r["bytes"] / 2**20
    return rows


# ----- ONNX Runtime backend -----------------------------------------------------------------------------------
def _session(data: bytes | str, threads: int = ORT_THREADS):
    try:
        import onnxruntime as ort
    except ImportError:
        raise CodecError("the onnx backend needs onnxruntime (pip install onnxruntime)") from None
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3
    return ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])


def load_onnx(model: LeafHyperprior, weights_sha256: str, part: str, export_dir: Path | None = EXPORT_DIR):
    """An ORT session for one part: the file in ``export_dir`` if it was exported from these very weights,
    else a fresh in-memory export (a stale file from an earlier checkpoint must never be used)."""
    path = Path(export_dir) / f"{part}.onnx" if export_dir is not None else None
    if path is not None and path.is_file():
        try:
            sess = _session(str(path))
            if sess.get_modelmeta().custom_metadata_map.get("weights_sha256") == weights_sha256:
                return sess
        except CodecError:
            raise
        except Exception:  # an unreadable or foreign file: fall back to exporting
            pass
    return _session(onnx_bytes(model, part, weights_sha256))


class OnnxTransforms:
    """The decoder's transforms (``h_s`` in float64, ``g_s``) in ONNX Runtime, with the PyTorch model's API."""

    def __init__(self, model: LeafHyperprior, weights_sha256: str, export_dir: Path | None = EXPORT_DIR):
        try:
            self.h_s = load_onnx(model, weights_sha256, "h_s", export_dir)
            self.g_s = load_onnx(model, weights_sha256, "g_s", export_dir)
        except CodecError:
            raise
        except Exception as exc:
            raise CheckpointError(f"cannot build the ONNX decoder: {exc.__class__.__name__}: {exc}") from None

    def hyper_synthesis(self, z_hat: torch.Tensor) -> torch.Tensor:
        z = np.ascontiguousarray(z_hat.detach().cpu().numpy(), dtype=np.float64)
        return torch.from_numpy(self.h_s.run(None, {"z_hat": z})[0])

    def synthesise(self, symbols: torch.Tensor, means: torch.Tensor, level: int) -> torch.Tensor:
        y_hat = (symbols.double() + means).float()  # exactly as LeafHyperprior.synthesise
        feeds = {"y_hat": y_hat.numpy(), "level": np.array([level], dtype=np.int64)}
        return torch.from_numpy(self.g_s.run(None, feeds)[0])


# ----- parity -------------------------------------------------------------------------------------------------
def diff_stats(out, ref) -> dict:
    """max |out - ref| and the PSNR of the difference relative to the reference's peak magnitude."""
    out = np.asarray(out, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    d = out - ref
    mse = float(np.mean(d**2))
    peak = float(np.abs(ref).max()) or 1.0
    return {
        "max_abs_diff": float(np.abs(d).max()),
        "psnr_db": float("inf") if mse == 0 else 10 * np.log10(peak**2 / mse),
        "identical": float(np.mean(d == 0)),
    }


def _pad(rgb: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(np.array(rgb, dtype=np.uint8)).permute(2, 0, 1)[None].float().div(255)
    h, w = rgb.shape[:2]
    return F.pad(x, (0, -w % STRIDE, 0, -h % STRIDE), mode="replicate")


@torch.no_grad()
def reference_intermediates(model: LeafHyperprior, rgb: np.ndarray, level: int) -> dict:
    """PyTorch's inputs and outputs of each part for one image at 0-based ``level`` (the coding path)."""
    x = _pad(rgb)
    y, z = model.analyse(x, level)
    medians = model.entropy_bottleneck._get_medians()
    z_hat = torch.round(z - medians) + medians  # what the decoder reconstructs from the z stream
    params = model.hyper_synthesis(z_hat)
    means, indexes = model.entropy_parameters(params)
    symbols = torch.round(y.double() - means).int()
    x_hat = model.synthesise(symbols, means, level)
    y_hat = (symbols.double() + means).float()
    return {"x": x, "y": y, "z": z, "z_hat": z_hat, "params": params, "means": means, "indexes": indexes,
            "y_hat": y_hat, "x_hat": x_hat}  # fmt: skip


def part_feeds(part: str, ref: dict, level: int) -> tuple[list, torch.Tensor]:
    """(inputs, PyTorch output) of one part; every part gets PyTorch's input, so errors do not compound."""
    lvl = torch.tensor([level], dtype=torch.int64)
    return {
        "g_a": ([ref["x"], lvl], ref["y"]),
        "h_a": ([ref["y"]], ref["z"]),
        "h_s": ([ref["z_hat"].double()], ref["params"]),
        "g_s": ([ref["y_hat"], lvl], ref["x_hat"]),
    }[part]


def cases(images, levels, cycle: bool = False) -> list[tuple[int, np.ndarray, int]]:
    """(image index, image, 1-based level) to check: every level for every image, or with ``cycle`` image i at
    level i mod K only (every level still covered, K times cheaper)."""
    levels = list(levels)
    if cycle:
        return [(i, rgb, levels[i % len(levels)]) for i, rgb in enumerate(images)]
    return [(i, rgb, q) for i, rgb in enumerate(images) for q in levels]


def parity(
    model: LeafHyperprior, checks, ts_dir: Path = EXPORT_DIR, onnx_dir: Path = EXPORT_DIR
) -> list[dict]:
    """Per check (see ``cases``), part and format: max abs diff and PSNR of the difference against PyTorch, and
    for ``h_s`` whether the means and scale indexes derived from it are identical (they must be)."""
    ts = {p: load_torchscript(Path(ts_dir) / f"{p}.pt") for p in PARTS}
    ort_s = {p: _session(str(Path(onnx_dir) / f"{p}.onnx")) for p in PARTS}
    rows = []
    for i, rgb, quality in checks:
        ref = reference_intermediates(model, rgb, quality - 1)
        for part in PARTS:
            inputs, expected = part_feeds(part, ref, quality - 1)
            with torch.no_grad(), single_thread():
                out_ts = ts[part](*inputs)
            names = INPUT_NAMES[part]
            out_ort = ort_s[part].run(None, {n: t.numpy() for n, t in zip(names, inputs)})[0]
            for fmt, out in (("TorchScript", out_ts), ("ONNX", out_ort)):
                row = {"image": i, "level": quality, "part": part, "format": fmt, **diff_stats(out, expected)}
                if part == "h_s":
                    means, indexes = model.entropy_parameters(torch.as_tensor(np.asarray(out)))
                    row["same_means"] = bool(torch.equal(means, ref["means"]))
                    row["same_indexes"] = bool(torch.equal(indexes, ref["indexes"]))
                rows.append(row)
    return rows


def decode_parity(torch_codec, onnx_codec, checks) -> list[dict]:
    """Encode each check's image (PyTorch) and decode it with both backends (one thread each): pixel differences
    (PSNR of the difference with peak 255) and decode times in seconds."""
    rows = []
    for n, (i, rgb, quality) in enumerate(checks):
        data = torch_codec.encode(rgb, quality)
        if n == 0:  # warm-up: lazy initialisation is not decode time
            torch_codec.decode(data)
            onnx_codec.decode(data)
        t0 = time.perf_counter()
        a = torch_codec.decode(data)
        t1 = time.perf_counter()
        b = onnx_codec.decode(data)
        t2 = time.perf_counter()
        d = b.astype(np.float64) - a
        mse = float(np.mean(d**2))
        rows.append({"image": i, "level": quality, "height": a.shape[0], "width": a.shape[1], "bytes": len(data),
                     "max_pixel_diff": int(np.abs(d).max()), "pixels_identical": float(np.mean(d == 0)),
                     "psnr_of_difference_db": np.inf if mse == 0 else 10 * np.log10(255**2 / mse),
                     "torch_s": t1 - t0, "onnx_s": t2 - t1})  # fmt: skip
    return rows


def summary_table(part_rows: list[dict], decode_rows: list[dict], sizes: list[dict]):
    """One table: per part and format the worst max abs diff and PSNR of the difference over the checks (and for
    h_s the share of checks with identical means and scale indexes), then the full decoders: pixels and time."""
    import pandas as pd

    mb = {r["file"]: r["MB"] for r in sizes}
    parts = pd.DataFrame(part_rows)
    out = []
    for part in PARTS:
        for fmt, suffix in (("TorchScript", ".pt"), ("ONNX", ".onnx")):
            g = parts[(parts.part == part) & (parts.format == fmt)]
            same = g[["same_means", "same_indexes"]].all(axis=1).mean() if part == "h_s" else np.nan
            out.append({"component": part, "format": fmt, "precision": "float64" if part == "h_s" else "float32",
                        "file_MB": mb.get(f"{part}{suffix}", np.nan), "checks": len(g),
                        "max_abs_diff": g.max_abs_diff.max(), "min_psnr_db": g.psnr_db.min(),
                        "identical_share": g.identical.mean(), "same_indexes_share": same,
                        "decode_ms_median": np.nan})  # fmt: skip
    dec = pd.DataFrame(decode_rows)
    ckpt = next((r["MB"] for r in sizes if r["file"].endswith(".pth.tar")), np.nan)
    onnx_mb = mb.get("h_s.onnx", np.nan) + mb.get("g_s.onnx", np.nan)
    for fmt, col, size in (("PyTorch", "torch_s", ckpt), ("ONNX Runtime", "onnx_s", onnx_mb)):
        ort = fmt == "ONNX Runtime"
        out.append({"component": "decoder (pixels)", "format": fmt, "precision": "uint8", "file_MB": size,
                    "checks": len(dec), "max_abs_diff": dec.max_pixel_diff.max() if ort else 0.0,
                    "min_psnr_db": dec.psnr_of_difference_db.min() if ort else np.inf,
                    "identical_share": dec.pixels_identical.mean() if ort else 1.0, "same_indexes_share": np.nan,
                    "decode_ms_median": 1000 * dec[col].median()})  # fmt: skip
    return pd.DataFrame(out)


def save_table(df, name: str, folder: Path) -> list[Path]:
    """``<folder>/<name>.csv`` and a Markdown copy (6 significant digits: diffs span 1e-14 to 1)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = folder / f"{name}.csv", folder / f"{name}.md"
    df.to_csv(csv_path, index=False)

    def cell(v):
        if isinstance(v, float | np.floating):
            return "–" if np.isnan(v) else ("inf" if np.isinf(v) else f"{v:.6g}")
        return str(v)

    lines = ["| " + " | ".join(df.columns) + " |", "|" + "|".join("---" for _ in df.columns) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    md_path.write_text("\n".join(lines) + "\n")
    return [csv_path, md_path]
