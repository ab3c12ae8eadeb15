"""TorchScript/ONNX export of the four transforms and the ONNX Runtime decoder backend (helpers/study/export.py, helpers/codec/onnx_runtime.py)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from codec_samples import leaves
from torch import nn

from helpers.codec.checkpoints import load_model
from helpers.codec.leaf_codec import LeafCodec
from helpers.codec.models import single_thread
from helpers.study import export


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
    for part in export.ONNX_PARTS:
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
    # ONNX Runtime has no float64 convolutions: the hyper-synthesis stays in PyTorch (TorchScript file only).
    assert not (exported / "h_s.onnx").exists() and (exported / "h_s.pt").is_file()


def test_export_exports_the_models_own_modules(shipped):
    """No re-implementation: neither the export nor the ONNX runtime defines a module of its own; they hand out
    the model's modules."""
    from helpers.codec import onnx_runtime

    model, _ = shipped
    for mod in (export, onnx_runtime):
        classes = [v for v in vars(mod).values() if isinstance(v, type) and v.__module__ == mod.__name__]
        assert not [c for c in classes if issubclass(c, nn.Module)]
    mods = export.export_modules(model)
    assert mods["g_a"] is model.g_a and mods["h_a"] is model.h_a and mods["g_s"] is model.g_s
    assert mods["h_s"] is model.h_s64 and next(mods["h_s"].parameters()).dtype == torch.float64


@pytest.mark.parametrize("height, width", [(64, 128), (192, 64), (320, 256)])
def test_onnx_runs_at_other_sizes(exported, shipped, height, width):
    model, _ = shipped
    for part in export.ONNX_PARTS:
        inputs = export.example_inputs(model, part, height, width)
        with torch.no_grad(), single_thread():
            expected = export.export_modules(model)[part](*inputs)
        sess = export.session(str(exported / f"{part}.onnx"))
        out = sess.run(None, {n: t.numpy() for n, t in zip(export.INPUT_NAMES[part], inputs)})[0]
        assert out.shape == tuple(expected.shape)
        assert np.abs(out - expected.numpy()).max() < 1e-3, part


def test_parity_with_pytorch_on_leaves(exported, shipped):
    """TorchScript reproduces PyTorch exactly (float64 h_s included: its means and scale indexes must come out
    identical, they select the rANS tables); ONNX Runtime to float32 rounding."""
    model, _ = shipped
    checks = export.cases(leaves(2), range(1, model.num_levels + 1))
    rows = export.parity(model, checks, exported, exported)
    assert len(rows) == 2 * model.num_levels * (len(export.PARTS) + len(export.ONNX_PARTS))
    for r in rows:
        label = f"{r['format']} {r['part']} image {r['image']} level {r['level']}"
        if r["format"] == "TorchScript":
            assert r["max_abs_diff"] == 0, label
            if r["part"] == "h_s":
                assert r["same_means"] and r["same_indexes"], label
        else:
            assert r["max_abs_diff"] < 1e-4 and r["psnr_db"] > 100, (label, r)


def test_onnx_backend_decodes_within_the_stated_tolerance(exported):
    pt, ort = LeafCodec(), LeafCodec(backend="onnx")
    images = leaves(2)
    images.append(np.ascontiguousarray(images[0][:65, :129]))
    images.append(np.ascontiguousarray(np.tile(images[1], (3, 3, 1))[:600, :700]))  # 2x2 transform tiles
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
    parts = [p for p in export.PARTS for fmt in ("pt", "onnx") if fmt == "pt" or p in export.ONNX_PARTS]
    assert list(table.component) == parts + ["decoder (pixels)"] * 2
    assert table.file_MB.iloc[: len(parts)].gt(0).all()
    assert table.decode_ms_median.iloc[-2:].gt(0).all()
    # The values, not only the shape: what the notebook's prose says about each row.
    by = {(r.component, r.format): r for r in table.itertuples()}
    assert all(by[(p, "TorchScript")].max_abs_diff == 0 for p in export.PARTS)
    assert all(by[(p, "ONNX")].max_abs_diff < 1e-4 for p in export.ONNX_PARTS)
    assert by[("h_s", "TorchScript")].same_indexes_share == 1 and by[("h_s", "TorchScript")].checks == len(
        checks
    )
    ort = by[("decoder (pixels)", "ONNX Runtime")]
    assert ort.max_abs_diff <= export.PIXEL_TOLERANCE and ort.identical_share > 0.999
    assert by[("decoder (pixels)", "PyTorch")].identical_share == 1
    csv_path, md_path = export.save_table(table, "export_parity", tmp_path)
    assert csv_path.is_file() and md_path.read_text().count("\n") == len(table) + 2


def test_a_stale_export_is_never_used(shipped, tmp_path):
    """ONNX files from another checkpoint (the shipped one will be replaced) are ignored, not trusted."""
    model, sha = shipped
    (tmp_path / "g_s.onnx").write_bytes(export.onnx_bytes(model, "g_s", "0" * 64))
    (tmp_path / "g_a.onnx").write_bytes(b"not onnx")
    for part in ("g_s", "g_a"):
        sess = export.load_onnx(model, sha, part, tmp_path)
        assert sess.get_modelmeta().custom_metadata_map["weights_sha256"] == sha


def test_v3_exports_and_decodes_on_onnx_runtime_within_the_stated_tolerance(tmp_path):
    """The second shipped model (codec v3, a composed architecture: ``--tune high``) goes through the same export
    and the same ONNX Runtime backend, its parity held to the shipped model's bounds."""
    from helpers import paths

    model, ckpt = load_model(paths.V3_CHECKPOINT)
    export.export_onnx(model, ckpt["weights_sha256"], tmp_path)
    export.export_torchscript(model, tmp_path)
    checks = export.cases(leaves(1), [1, model.num_levels])
    for r in export.parity(model, checks, tmp_path, tmp_path):
        label = f"{r['format']} {r['part']} level {r['level']}"
        if r["format"] == "TorchScript":
            assert r["max_abs_diff"] == 0 and (r["part"] != "h_s" or r["same_indexes"]), label
        else:
            assert r["max_abs_diff"] < 1e-4 and r["psnr_db"] > 100, (label, r)
    pt, ort = LeafCodec(paths.V3_CHECKPOINT), LeafCodec(paths.V3_CHECKPOINT, backend="onnx")
    for r in export.decode_parity(pt, ort, checks):
        assert r["max_pixel_diff"] <= export.PIXEL_TOLERANCE and r["pixels_identical"] > 0.999, r
