"""Export of the codec's four transforms to TorchScript and ONNX files, and parity checks between the backends.

What is exported are the model's own modules, nothing re-implemented (``outputs/export/<part>.pt`` and
``<part>.onnx``; batch, height and width dynamic; ONNX opset 17):

* ``g_a(x) -> y``: analysis (float32). ``h_a(y) -> z``: hyper-analysis (float32).
* ``h_s(z_hat) -> params``: the float64 copy of the hyper-synthesis that coding runs (``CodingModel.h_s64``);
  its output, the raw (means, scales) parameters, selects the rANS tables, so encoder and decoder must agree on it
  bit-for-bit. **TorchScript only**: ONNX Runtime has no float64 Conv/ConvTranspose kernels, so there is no
  ``h_s.onnx``, and the ONNX Runtime decoder keeps this small step (a few percent of the decode time) in PyTorch.
* ``g_s(y) -> x``: synthesis (float32), unclamped.

The quality level's gain vectors are not part of the graphs: the level is a scale, ``y * gain`` before rounding
and ``y_hat * inv_gain`` before ``g_s`` (``LevelGain``, state-dict keys ``gain.log`` / ``inv_gain.log``), which
the codec applies in PyTorch for both backends, fractional levels included. TorchScript files come from
``torch.jit.script`` (GDN's ``LowerBound`` is scriptable; ``torch.jit.trace`` cannot record it), ONNX files from the
TorchScript-based ``torch.onnx.export``, tagged with the SHA-256 of the weights they came from.

The graphs themselves and ``LeafCodec(backend="onnx")``'s runtime are ``helpers.codec.onnx_runtime``'s; here
are the files, the parity checks between the backends (``PIXEL_TOLERANCE``, enforced by tests/test_export.py)
and notebook 05's tables.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from helpers.codec.fileio import atomic_write
from helpers.codec.latent_coding import compress_hyper
from helpers.codec.models import CodingModel, pad_to_stride, single_thread
from helpers.codec.onnx_runtime import (  # noqa: F401  (the notebook's and tests' view of the ONNX parts)
    EXPORT_DIR,
    INPUT_NAMES,
    ONNX_PARTS,
    OPSET,
    PIXEL_TOLERANCE,
    example_inputs,
    export_modules,
    load_onnx,
    onnx_bytes,
    quiet,
    session,
)

PARTS = ("g_a", "h_a", "h_s", "g_s")


def export_onnx(model: CodingModel, weights_sha256: str, out_dir: Path = EXPORT_DIR) -> dict[str, Path]:
    """Write ``<part>.onnx`` for the ONNX parts and validate each with ``onnx.checker.check_model``."""
    import onnx

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    for part in ONNX_PARTS:
        data = onnx_bytes(model, part, weights_sha256)
        onnx.checker.check_model(onnx.load_from_string(data), full_check=True)
        written[part] = atomic_write(out_dir / f"{part}.onnx", data, force=True)
    return written


def export_torchscript(model: CodingModel, out_dir: Path = EXPORT_DIR) -> dict[str, Path]:
    """Write ``<part>.pt`` (torch.jit.script; load with ``torch.jit.load``)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    for part, module in export_modules(model).items():
        with quiet():
            scripted = torch.jit.script(module)
        written[part] = atomic_write(
            out_dir / f"{part}.pt", lambda f, m=scripted: torch.jit.save(m, f), force=True
        )
    return written


def load_torchscript(path: Path):
    with quiet():
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


@torch.no_grad()
def reference_intermediates(model: CodingModel, rgb: np.ndarray, level: int) -> dict:
    """PyTorch's inputs and outputs of each part for one (single-tile) image at 1-based ``level``, through the
    codec's own coding steps (the hyper-latent's and the tile's streams, written and read back)."""
    x = pad_to_stride(torch.from_numpy(np.array(rgb, dtype=np.uint8)).permute(2, 0, 1)[None].float().div(255))
    with single_thread():
        y_raw = model.g_a(x)
        y = model.gain(y_raw, level - 1)
        z = model.h_a(y)
        _, z_hat = compress_hyper(model.entropy_bottleneck, z)
        params = model.hyper_synthesis(z_hat)
        means, indexes = model.tile_codec.parameters(params)
        streams, _ = model.tile_codec.compress(y, params)
        y_hat, _ = model.tile_codec.decompress(streams, params, y.shape[-2:], "latent stream")
        g_s_in = model.inv_gain(y_hat, level - 1)
        x_hat = model.g_s(g_s_in)
    return {"x": x, "y_raw": y_raw, "y": y, "z": z, "z_hat": z_hat, "params": params, "means": means,
            "indexes": indexes, "g_s_in": g_s_in, "x_hat": x_hat}  # fmt: skip


def part_feeds(part: str, ref: dict) -> tuple[list, torch.Tensor]:
    """(inputs, PyTorch output) of one part; every part gets PyTorch's input, so errors do not compound."""
    return {
        "g_a": ([ref["x"]], ref["y_raw"]),
        "h_a": ([ref["y"]], ref["z"]),
        "h_s": ([ref["z_hat"].double()], ref["params"]),
        "g_s": ([ref["g_s_in"]], ref["x_hat"]),
    }[part]


def cases(images, levels, cycle: bool = False) -> list[tuple[int, np.ndarray, int]]:
    """(image index, image, 1-based level) to check: every level for every image, or with ``cycle`` image i at
    level i mod K only (every level still covered, K times cheaper)."""
    levels = list(levels)
    if cycle:
        return [(i, rgb, levels[i % len(levels)]) for i, rgb in enumerate(images)]
    return [(i, rgb, q) for i, rgb in enumerate(images) for q in levels]


def parity(model: CodingModel, checks, ts_dir: Path = EXPORT_DIR, onnx_dir: Path = EXPORT_DIR) -> list[dict]:
    """Per check (see ``cases``), part and format: max abs diff and PSNR of the difference against PyTorch, and
    for ``h_s`` whether the means and scale indexes derived from it are identical (they must be)."""
    ts = {p: load_torchscript(Path(ts_dir) / f"{p}.pt") for p in PARTS}
    ort_s = {p: session(str(Path(onnx_dir) / f"{p}.onnx")) for p in ONNX_PARTS}
    rows = []
    for i, rgb, level in checks:
        ref = reference_intermediates(model, rgb, level)
        for part in PARTS:
            inputs, expected = part_feeds(part, ref)
            with torch.no_grad(), single_thread():
                outputs = {"TorchScript": ts[part](*inputs)}
            if part in ort_s:
                names = INPUT_NAMES[part]
                outputs["ONNX"] = ort_s[part].run(None, {n: t.numpy() for n, t in zip(names, inputs)})[0]
            for fmt, out in outputs.items():
                row = {"image": i, "level": level, "part": part, "format": fmt, **diff_stats(out, expected)}
                if part == "h_s":
                    means, indexes = model.tile_codec.parameters(torch.as_tensor(np.asarray(out)))
                    row["same_means"] = bool(torch.equal(means, ref["means"]))
                    row["same_indexes"] = bool(torch.equal(indexes, ref["indexes"]))
                rows.append(row)
    return rows


def decode_parity(torch_codec, onnx_codec, checks) -> list[dict]:
    """Encode each check's image (PyTorch) and decode it with both backends: pixel differences
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
            if g.empty:  # h_s has no ONNX form
                continue
            same = g[["same_means", "same_indexes"]].all(axis=1).mean() if part == "h_s" else np.nan
            out.append({"component": part, "format": fmt, "precision": "float64" if part == "h_s" else "float32",
                        "file_MB": mb.get(f"{part}{suffix}", np.nan), "checks": len(g),
                        "max_abs_diff": g.max_abs_diff.max(), "min_psnr_db": g.psnr_db.min(),
                        "identical_share": g.identical.mean(), "same_indexes_share": same,
                        "decode_ms_median": np.nan})  # fmt: skip
    dec = pd.DataFrame(decode_rows)
    ckpt = next((r["MB"] for r in sizes if r["file"].endswith(".pth.tar")), np.nan)
    onnx_mb = mb.get("g_s.onnx", np.nan)  # plus h_s, which runs in PyTorch from the checkpoint
    for fmt, col, size in (("PyTorch", "torch_s", ckpt), ("ONNX Runtime", "onnx_s", onnx_mb)):
        ort = fmt == "ONNX Runtime"
        out.append({"component": "decoder (pixels)", "format": fmt, "precision": "uint8", "file_MB": size,
                    "checks": len(dec), "max_abs_diff": dec.max_pixel_diff.max() if ort else 0.0,
                    "min_psnr_db": dec.psnr_of_difference_db.min() if ort else np.inf,
                    "identical_share": dec.pixels_identical.mean() if ort else 1.0, "same_indexes_share": np.nan,
                    "decode_ms_median": 1000 * dec[col].median()})  # fmt: skip
    return pd.DataFrame(out)


def save_table(df, name: str, folder: Path) -> list[Path]:
    """``<folder>/<name>.csv`` and a Markdown copy through the study's table writer, with 6 significant digits
    (differences span 1e-14 to 1)."""
    from helpers.study.tables import save_table as write_table

    return write_table(df, name, folder, floatfmt=".6g")
