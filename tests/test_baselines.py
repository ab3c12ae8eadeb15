"""Classical codecs: real, complete files that round-trip; the evaluation loop writes the documented table for
them (the loop itself: tests/test_evaluate.py)."""

import dataclasses

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from helpers import paths
from helpers.codec.errors import LeafCodecError
from helpers.measures.metrics import psnr
from helpers.study.baselines import (
    AVIF_QUALITIES,
    AVIF_VARIANTS,
    _pil_decode,
    avif_roi,
    avif_roi_encode,
    classical_codecs,
    rate_distribution_text,
    rate_map_shape,
)
from helpers.study.evaluate import CSV_COLUMNS, evaluate

# The first bytes of each standard file (AVIF: an ISO-BMFF 'ftyp' box of brand 'avif' after its size).
MAGIC = {"jpeg": (0, b"\xff\xd8\xff"), "jpeg2000": (0, b"\xff\x4f\xff\x51"), "webp": (8, b"WEBP"),
         "avif": (4, b"ftypavif"), "avif_fast": (4, b"ftypavif")}  # fmt: skip
CODECS = {c.name: c for c in classical_codecs()}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _synthetic(h=69, w=101):
    """Odd-sized (chroma subsampling edge case) smooth image with a textured 'leaf'."""
    yy, xx = np.mgrid[:h, :w]
    leaf = ((yy - h / 2) ** 2 / (h / 3) ** 2 + (xx - w / 2) ** 2 / (w / 3) ** 2) < 1
    img = np.stack([40 + xx, 60 + yy, 50 + (xx + yy) // 3], -1).astype(float)
    img[leaf] = [60, 140, 50] + 25 * np.sin(xx[leaf] / 3.0)[:, None]
    return np.clip(img, 0, 255).astype(np.uint8)


def _real_image():
    root = paths.data_dir()
    if not root.is_dir():
        pytest.skip(f"no PlantVillage at {root}: set DATA_DIR to run the real-image tests")
    from helpers.data.dataset import read_image

    first_class = sorted(d for d in root.iterdir() if d.is_dir())[0]
    return read_image(sorted(first_class.glob("*.[jJ][pP][gG]"))[0])


def _check_codec(codec, img: np.ndarray, min_top_psnr: float):
    sizes, quality = [], []
    for setting in codec.settings:
        data = codec.encode(img, setting)
        assert isinstance(data, bytes)
        offset, magic = MAGIC[codec.name]
        assert data[offset : offset + len(magic)] == magic, "not a complete standard file"
        out = codec.decode(data)
        assert out.dtype == np.uint8 and out.shape == img.shape
        sizes.append(len(data))
        quality.append(psnr(img, out))
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1], f"settings not in rate order: {sizes}"
    assert quality[-1] > quality[0] and quality[-1] > min_top_psnr and quality[0] > 15, quality
    return sizes


@pytest.mark.parametrize("name", list(MAGIC))
def test_round_trip_synthetic(name):
    _check_codec(CODECS[name], _synthetic(), min_top_psnr=30)


@pytest.mark.parametrize("name", list(MAGIC))
def test_round_trip_real_leaf(name):
    img = _real_image()
    sizes = _check_codec(CODECS[name], img, min_top_psnr=28)
    bpps = np.array(sizes) * 8 / (img.shape[0] * img.shape[1])
    assert bpps[0] < 0.6 and bpps[-1] > 1.0, bpps  # the settings span low to high rates on a leaf


def test_files_open_in_an_independent_decoder(tmp_path):
    """The bytes are whole files: Pillow opens each from disk on its own (JPEG 2000 if Pillow has it)."""
    from PIL import features

    img = _synthetic()
    for name, codec in CODECS.items():
        if name == "jpeg2000" and not features.check("jpg_2000"):
            continue
        path = tmp_path / f"image.{name}"
        path.write_bytes(codec.encode(img, codec.settings[-1]))
        with Image.open(path) as im:
            assert im.size == (img.shape[1], img.shape[0])
            assert psnr(img, np.asarray(im.convert("RGB"))) > 30


def test_jpeg2000_without_openjpeg_names_the_fix(monkeypatch):
    import glymur

    monkeypatch.setattr(glymur.version, "openjpeg_version", "0.0.0")
    with pytest.raises(LeafCodecError, match="libopenjp2-7"):
        CODECS["jpeg2000"].encode(_synthetic(), 50)


def test_avif_variants_differ_as_documented():
    """The headline AVIF keeps full-resolution chroma (4:4:4); the fast one subsamples it (4:2:0)."""
    assert AVIF_VARIANTS == {"avif": ("4:4:4", 4), "avif_fast": ("4:2:0", 6)}
    img = _synthetic()
    img[:, ::2] = img[:, ::2] // 2 + [0, 0, 120]  # colour detail at the finest scale: lost by 4:2:0
    top = {name: CODECS[name].decode(CODECS[name].encode(img, 90)) for name in AVIF_VARIANTS}
    assert psnr(img, top["avif"]) > psnr(img, top["avif_fast"]) + 3


def test_evaluate_writes_one_row_per_image_codec_setting(tmp_path):
    (tmp_path / "leafy").mkdir()
    images = []
    for i, size in enumerate([(64, 96), (80, 72)]):
        images.append(tmp_path / "leafy" / f"img{i}.png")
        Image.fromarray(_synthetic(*size)).save(images[-1])
    codecs = [dataclasses.replace(c, settings=c.settings[1:3]) for c in CODECS.values()]
    out_csv = tmp_path / "results" / "baselines.csv"

    df = evaluate(codecs, images, out_csv, lpips=True, data_root=tmp_path, progress=False)
    assert list(df.columns) == list(CSV_COLUMNS)
    assert len(df) == 2 * len(MAGIC) * 2
    assert set(df.image) == {"leafy/img0.png", "leafy/img1.png"}
    assert list(df.codec.unique()) == list(MAGIC)
    assert df[["psnr", "ms_ssim", "ms_ssim_db", "lpips", "encode_ms", "decode_ms"]].notna().all().all()
    row = df.iloc[0]
    data = codecs[0].encode(np.asarray(Image.open(images[0]).convert("RGB")), int(row.setting))
    assert row.bytes == len(data) and row.bpp == pytest.approx(8 * len(data) / (64 * 96))
    assert (row.height, row.width) == (64, 96)
    on_disk = pd.read_csv(out_csv)
    assert on_disk.shape == df.shape and list(on_disk.columns) == list(CSV_COLUMNS)
    assert list(out_csv.parent.iterdir()) == [out_csv]  # no temporary file left behind

    no_lpips = evaluate(codecs[:1], images[:1], None, lpips=False, progress=False)
    assert len(no_lpips) == 2 and no_lpips.lpips.isna().all()


# AVIF with a rate map (avif_roi): libaom's rate-guided delta-q, given one weight per 16x16 block.


def _halves_psnr(img, out):
    half = img.shape[1] // 2
    return psnr(img[:, :half], out[:, :half]), psnr(img[:, half:], out[:, half:])


def _left_map(rows, cols, background=0.03):
    w = np.full((rows, cols), background)
    w[:, : cols // 2] = 1
    return w


def test_avif_rate_map_file_is_libaoms_format(monkeypatch):
    """One number per 16x16 block (partial edge blocks too), a line per block row, top row first, no header;
    the codec's padded grid is cropped to it; libaom reads that very file during the encode."""
    w = np.arange(1, 13, dtype=float).reshape(3, 4) / 4  # a 40x50 image: 3x4 blocks
    text = rate_distribution_text(w, 40, 50)
    assert text == "0.25 0.5 0.75 1\n1.25 1.5 1.75 2\n2.25 2.5 2.75 3\n"
    padded = np.full((4, 4), 99.0)  # ceil(40/64)*4 x ceil(50/64)*4: the extra row lies outside the image
    padded[:3, :4] = w
    assert rate_distribution_text(padded, 40, 50) == text
    for bad in (np.ones((3, 3)), np.zeros((3, 4)), np.full((3, 4), np.nan), -np.ones((3, 4))):
        with pytest.raises(ValueError):
            rate_distribution_text(bad, 40, 50)

    seen = []
    save = Image.Image.save

    def spy(self, fp, format=None, **params):
        advanced = params["advanced"]
        seen.append((advanced, open(advanced["rate-distribution-info"]).read()))
        return save(self, fp, format, **params)

    monkeypatch.setattr(Image.Image, "save", spy)
    img = _synthetic(40, 50)
    data = avif_roi_encode(img, 50, w)
    [(advanced, on_disk)] = seen
    assert on_disk == text
    assert advanced["deltaq-mode"] == "3" and advanced["enable-rate-guide-deltaq"] == "1"
    assert avif_roi_encode(img, 50, 100 * w) == data  # libaom normalises the weights: only their ratios count


def test_avif_roi_moves_quality_to_the_favoured_half():
    """At the same setting, the favoured half is coded better and the other worse: each half is > 1 dB better
    when the map favours it than when it favours the other half, and the gap between the halves widens by
    > 1 dB over plain AVIF (with the options ignored, all three files would be the same)."""
    img, q = _synthetic(128, 128), 50
    left = _left_map(8, 8)
    plain = _halves_psnr(img, CODECS["avif"].decode(CODECS["avif"].encode(img, q)))
    to_left = _halves_psnr(img, _pil_decode(avif_roi_encode(img, q, left)))
    to_right = _halves_psnr(img, _pil_decode(avif_roi_encode(img, q, left[:, ::-1])))
    assert to_left[0] > to_right[0] + 1 and to_right[1] > to_left[1] + 1, (to_left, to_right)
    assert to_left[0] - to_left[1] > plain[0] - plain[1] + 1, (to_left, plain)


def test_avif_roi_favoured_half_beats_plain_avif_on_a_leaf():
    img = _real_image()[64:192, 64:192]
    plain = _halves_psnr(img, CODECS["avif"].decode(CODECS["avif"].encode(img, 50)))
    roi = _halves_psnr(img, _pil_decode(avif_roi_encode(img, 50, _left_map(8, 8))))
    assert roi[0] > plain[0] + 1 and roi[1] < plain[1] - 1, (roi, plain)


def test_avif_roi_codec_in_the_evaluation_loop_at_odd_sizes():
    """Sizes that are not multiples of 16 (or 64): both grids give the same file, a whole AVIF that decodes
    to the image's size; the map can be a function of the image, so one codec serves every image."""
    img = _synthetic(130, 257)  # 9 x 17 blocks; the codec's padded grid is 12 x 20
    data = avif_roi_encode(img, 50, _left_map(9, 17))
    assert data[4:12] == b"ftypavif" and _pil_decode(data).shape == img.shape
    padded = np.full((12, 20), 5.0)
    padded[:9, :17] = _left_map(9, 17)
    assert avif_roi_encode(img, 50, padded) == data
    with pytest.raises(ValueError, match=r"\(9, 17\)"):
        avif_roi_encode(img, 50, np.ones((8, 16)))

    codec = avif_roi(lambda x: _left_map(*rate_map_shape(*x.shape[:2])))
    assert codec.name == "avif_roi" and codec.settings == AVIF_QUALITIES
    images = [_synthetic(69, 101), img]
    df = evaluate([dataclasses.replace(codec, settings=(30, 60))], images, lpips=False, progress=False)
    assert len(df) == 4 and (df.bytes > 0).all() and df.psnr.notna().all()
    assert df.bytes.iloc[0] < df.bytes.iloc[1]
