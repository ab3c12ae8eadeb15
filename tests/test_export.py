"""TorchScript/ONNX export of the four transforms and the ONNX Runtime decoder backend (helpers/export.py)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from codec_samples import leaves

from helpers import export
from helpers.codec import LeafCodec, load_model
from helpers.model import single_thread


@pytest.fixture(scope="module")
def shipped():
    model, ckpt = load_model()
    return model, ckpt["weights_sha256"]


@pytest.fixture(scope="module")
def exported(shipped, tmp_path_factory):
    model, sha = shipped
    folder = tmp_path_factory.mktemp("export")
    export.export_onnx(model, sha, folder)
    export.export_torchscript(model, folder)
    return folder


def test_onnx_files_are_valid_with_dynamic_sizes(exported, shipped):
    _, sha = shipped
    for part in export.PARTS:
        path = exported / f"{part}.onnx"
        onnx.checker.check_model(str(path), full_check=True)
        proto = onnx.load(str(path))
        assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 17
        meta = {p.key: p.value for p in proto.metadata_props}
        assert meta["weights_sha256"] == sha and meta["part"] == part
        dims = proto.graph.input[0].type.tensor_type.shape.dim
        assert all(d.dim_param for d in (dims[0], dims[2], dims[3])), (
            f"{part}: batch/height/width must be dynamic"
        )
    h_s = onnx.load(str(exported / "h_s.onnx"))
    assert h_s.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.DOUBLE
    assert not {"Conv", "ConvTranspose", "LeakyRelu"} & {n.op_type for n in h_s.graph.node}


@pytest.mark.parametrize("height, width", [(64, 128), (192, 64), (320, 256)])
def test_onnx_runs_at_other_sizes(exported, shipped, height, width):
    model, _ = shipped
    for part in export.PARTS:
        inputs = export.example_inputs(model, part, height, width, level=4)
        with torch.no_grad(), single_thread():
            expected = export.export_modules(model)[part](*inputs)
        sess = export._session(str(exported / f"{part}.onnx"))
        out = sess.run(None, {n: t.numpy() for n, t in zip(export.INPUT_NAMES[part], inputs)})[0]
        assert out.shape == tuple(expected.shape)
        tol = 1e-10 if part == "h_s" else 1e-3
        assert np.abs(out - expected.numpy()).max() < tol, part


def test_parity_with_pytorch_on_leaves(exported, shipped):
    """TorchScript reproduces PyTorch exactly; ONNX Runtime to float32 rounding (float64 for h_s, whose means
    and scale indexes must come out identical: they select the rANS tables)."""
    model, _ = shipped
    checks = export.cases(leaves(2), range(1, model.num_levels + 1))
    rows = export.parity(model, checks, exported, exported)
    assert len(rows) == 2 * model.num_levels * len(export.PARTS) * 2
    for r in rows:
        label = f"{r['format']} {r['part']} image {r['image']} level {r['level']}"
        if r["format"] == "TorchScript":
            assert r["max_abs_diff"] == 0, label
        elif r["part"] == "h_s":
            assert r["max_abs_diff"] < 1e-10 and r["same_means"] and r["same_indexes"], label
        else:
            assert r["max_abs_diff"] < 1e-4 and r["psnr_db"] > 100, (label, r)


def test_onnx_backend_decodes_within_the_stated_tolerance(exported):
    pt, ort = LeafCodec(), LeafCodec(backend="onnx")
    images = leaves(2)
    images.append(np.ascontiguousarray(images[0][:65, :129]))
    rows = export.decode_parity(pt, ort, export.cases(images, pt.levels))
    assert len(rows) == len(images) * len(pt.levels)
    for r in rows:
        assert r["max_pixel_diff"] <= export.PIXEL_TOLERANCE, r
        assert r["pixels_identical"] > 0.999, r


def test_the_parity_table(exported, shipped, tmp_path):
    model, _ = shipped
    checks = export.cases(leaves(2), range(1, model.num_levels + 1), cycle=True)
    part_rows = export.parity(model, checks, exported, exported)
    decode_rows = export.decode_parity(LeafCodec(), LeafCodec(backend="onnx"), checks)
    table = export.summary_table(part_rows, decode_rows, export.file_sizes(exported))
    assert list(table.component) == [p for p in export.PARTS for _ in range(2)] + ["decoder (pixels)"] * 2
    assert table.file_MB.iloc[:8].gt(0).all()
    assert table.decode_ms_median.iloc[-2:].gt(0).all()
    csv_path, md_path = export.save_table(table, "export_parity", tmp_path)
    assert csv_path.is_file() and md_path.read_text().count("\n") == len(table) + 2


def test_a_stale_export_is_never_used(shipped, tmp_path):
    """ONNX files from another checkpoint (the shipped one will be replaced) are ignored, not trusted."""
    model, sha = shipped
    (tmp_path / "g_s.onnx").write_bytes(export.onnx_bytes(model, "g_s", "0" * 64))
    (tmp_path / "h_s.onnx").write_bytes(b"not onnx")
    for part in ("g_s", "h_s"):
        sess = export.load_onnx(model, sha, part, tmp_path)
        assert sess.get_modelmeta().custom_metadata_map["weights_sha256"] == sha
