"""Files outlive the machine that wrote them: .leaf files written by an earlier commit (tests/golden/README.md) on
another machine decode here to the pixels they decoded to there.

The latent symbols are exact on every CPU (the file's symbol CRC is checked on every decode); the synthesis runs
in float32, whose rounding differs between CPU kinds (AVX2, AVX-512), so a pixel may differ by one grey level
after rounding to 8 bits; README's Guarantees say so.
"""

import numpy as np
import pytest
from codec_samples import ROOT, run_cli
from PIL import Image

GOLDEN = ROOT / "tests" / "golden"
NAMES = sorted(p.stem for p in GOLDEN.glob("*.leaf"))


def test_every_golden_case_is_committed():
    assert NAMES == sorted(["grey_level4", "leaf_level1", "leaf_level4", "leaf_level7", "multitile_level3",
                            "perceptual_level4", "v3_level4", "v3_level10", "v3_multitile_level6",
                            "roi_level6", "v3_roi_multitile_level8", "v4_roi_level6",
                            "v4_roi_lesion_multitile_level5"])  # fmt: skip
    versions = {n: (GOLDEN / f"{n}.leaf").read_bytes()[4] for n in NAMES}
    assert versions == {n: 4 if n.startswith("v4_") else 3 if "roi" in n else 2 for n in NAMES}
    assert all((GOLDEN / f"{n}.png").is_file() for n in NAMES)


@pytest.fixture(scope="module")
def decoded(tmp_path_factory):
    out = tmp_path_factory.mktemp("decoded")
    proc = run_cli("decompress", *(GOLDEN / f"{n}.leaf" for n in NAMES), "--out-dir", out)
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.mark.parametrize("name", NAMES)
def test_golden_file_decodes_to_its_pixels(decoded, name):
    expected = np.asarray(Image.open(GOLDEN / f"{name}.png"))
    got = np.asarray(Image.open(decoded / f"{name}.png"))
    assert got.shape == expected.shape  # grey stays grey, the size is the original's
    diff = np.abs(got.astype(int) - expected.astype(int))
    assert diff.max() <= 1, f"{name}: {int((diff > 1).sum())} pixels off by more than one grey level"


def test_version_4_codes_the_same_latent_and_map_as_version_3():
    """roi_level6 (version 3) and v4_roi_level6 were coded from the same image and mask: only the map's coding
    differs, and version 4's is smaller."""
    from helpers.codec.container import latent_grid, parse

    v3, v4 = (parse((GOLDEN / f"{n}.leaf").read_bytes()) for n in ("roi_level6", "v4_roi_level6"))
    assert v3.symbols_crc == v4.symbols_crc and v3.streams == v4.streams
    grid = latent_grid(v3.height, v3.width)
    assert np.array_equal(v3.roi.weights(*grid), v4.roi.weights(*grid))
    assert len(v4.roi.coded) < len(v3.roi.coded)


@pytest.mark.parametrize("name, model", [("perceptual_level4", "leaf-hyperprior-perceptual"),
                                         ("leaf_level4", "leaf-hyperprior "),
                                         ("v3_level10", "leaf-hyperprior-v3 ")])  # fmt: skip
def test_golden_files_name_their_model(name, model):
    proc = run_cli("info", GOLDEN / f"{name}.leaf")
    assert proc.returncode == 0, proc.stderr
    assert f"model:     {model}" in proc.stdout
