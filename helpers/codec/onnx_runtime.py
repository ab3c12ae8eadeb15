"""The model's parts as ONNX graphs, and ``g_s`` run in ONNX Runtime (``LeafCodec(backend="onnx")``).

What is exported are the model's own modules, nothing re-implemented (batch, height and width dynamic; ONNX opset
17): ``g_a(x) -> y``, ``h_a(y) -> z``, ``g_s(y) -> x`` (float32, unclamped), and ``h_s(z_hat) -> params``, the float64
hyper-synthesis coding runs, which ONNX Runtime cannot run (no float64 Conv kernels) and stays in PyTorch.

``OnnxSynthesis`` runs ``g_s`` in ONNX Runtime, tile by tile like PyTorch's, so ``LeafCodec(backend="onnx")``
decodes with ORT while entropy decoding stays in CompressAI's rANS. Encoding always uses PyTorch: a file does
not depend on the backend that decodes it. ORT's float32 convolutions differ from PyTorch's in the last bits, so
the two backends' pixels may differ by one grey level in rare places (``PIXEL_TOLERANCE``).
"""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from helpers import paths
from helpers.codec.errors import CheckpointError, CodecError
from helpers.codec.models import CodingModel

EXPORT_DIR = paths.OUTPUTS / "export"
OPSET = 17
PIXEL_TOLERANCE = 1  # max |ORT - PyTorch| decoded pixel difference the tests accept (grey levels)
ONNX_PARTS = ("g_a", "h_a", "g_s")  # no float64 convolutions in ONNX Runtime: h_s stays in PyTorch
ORT_THREADS = 1  # like PyTorch's coding path (models.single_thread): results must not depend on the machine


# ----- exportable modules -------------------------------------------------------------------------------------
def export_modules(model: CodingModel) -> dict[str, nn.Module]:
    """The four parts: the model's own modules (``h_s`` is its float64 coding copy), in eval mode."""
    return {"g_a": model.g_a.eval(), "h_a": model.h_a.eval(), "h_s": model.h_s64, "g_s": model.g_s.eval()}


def example_inputs(model: CodingModel, part: str, height: int = 256, width: int = 256) -> tuple:
    """Inputs of the right shape and dtype for one part (an image of ``height`` x ``width``)."""
    h, w = height // 16, width // 16
    g = torch.Generator().manual_seed(0)
    if part == "g_a":
        return (torch.rand(1, 3, height, width, generator=g),)
    if part == "h_a":
        return (torch.randn(1, model.M, h, w, generator=g) * 4,)
    if part == "h_s":
        return (torch.randint(-4, 5, (1, model.N, h // 4, w // 4), generator=g).double(),)
    return (torch.randint(-4, 5, (1, model.M, h, w), generator=g).float(),)


INPUT_NAMES = {"g_a": ["x"], "h_a": ["y"], "h_s": ["z_hat"], "g_s": ["y_hat"]}
OUTPUT_NAMES = {"g_a": ["y"], "h_a": ["z"], "h_s": ["params"], "g_s": ["x_hat"]}


# ----- writing the exports ------------------------------------------------------------------------------------
@contextlib.contextmanager
def quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TorchScript / legacy-exporter deprecation notices
        yield


def onnx_bytes(model: CodingModel, part: str, weights_sha256: str, opset: int = OPSET) -> bytes:
    """One part as an ONNX model (TorchScript-based exporter), tagged with the weights it came from."""
    import onnx

    if part not in ONNX_PARTS:
        raise ValueError(f"{part} has no ONNX form (ONNX Runtime has no float64 convolutions)")
    first, out = INPUT_NAMES[part][0], OUTPUT_NAMES[part][0]
    dynamic = {first: {0: "batch", 2: "height", 3: "width"}, out: {0: "batch", 2: "h", 3: "w"}}
    buf = io.BytesIO()
    with quiet(), torch.no_grad():
        torch.onnx.export(export_modules(model)[part], example_inputs(model, part), buf, dynamo=False,
                          opset_version=opset, input_names=INPUT_NAMES[part], output_names=[out],
                          dynamic_axes=dynamic)  # fmt: skip
    proto = onnx.load_from_string(buf.getvalue())
    meta = {"part": part, "weights_sha256": weights_sha256, "N": str(model.N), "M": str(model.M),
            "levels": str(model.num_levels),
            "gain": "not included: y * exp(log_gain[level]) after g_a, y_hat * exp(log_inv_gain[level]) before g_s"}  # fmt: skip
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.producer_name = "leaf-codec-study"
    return proto.SerializeToString()


# ----- ONNX Runtime backend -----------------------------------------------------------------------------------
def session(data: bytes | str, threads: int = ORT_THREADS):
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


def load_onnx(model: CodingModel, weights_sha256: str, part: str, export_dir: Path | None = EXPORT_DIR):
    """An ORT session for one part: the file in ``export_dir`` if it was exported from these very weights,
    else a fresh in-memory export (a stale file from an earlier checkpoint must never be used)."""
    path = Path(export_dir) / f"{part}.onnx" if export_dir is not None else None
    if path is not None and path.is_file():
        try:
            sess = session(str(path))
            if sess.get_modelmeta().custom_metadata_map.get("weights_sha256") == weights_sha256:
                return sess
        except CodecError:
            raise
        except Exception:  # an unreadable or foreign file: fall back to exporting
            pass
    return session(onnx_bytes(model, part, weights_sha256))


class OnnxSynthesis:
    """``g_s`` in ONNX Runtime, callable like the PyTorch module (float32 tensor in, float32 tensor out).
    ORT sessions may be run from several threads at once (the codec's tile workers)."""

    def __init__(self, model: CodingModel, weights_sha256: str, export_dir: Path | None = EXPORT_DIR):
        try:
            self.session = load_onnx(model, weights_sha256, "g_s", export_dir)
        except CodecError:
            raise
        except Exception as exc:
            raise CheckpointError(f"cannot build the ONNX decoder: {exc.__class__.__name__}: {exc}") from None

    def __call__(self, y: torch.Tensor, region: tuple[slice, slice] | None = None) -> torch.Tensor:
        y = np.ascontiguousarray(y.detach().cpu().numpy(), dtype=np.float32)
        x = torch.from_numpy(self.session.run(None, {"y_hat": y})[0])
        return x if region is None else x[(..., *region)]
