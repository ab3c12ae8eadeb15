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
                            "roi_level6", "v3_roi_multitile_level8"])  # fmt: skip
    assert all(
        ((GOLDEN / f"{n}.leaf").read_bytes()[4] == 3) == ("roi" in n) for n in NAMES
    )  # format versions
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


@pytest.mark.parametrize("name, model", [("perceptual_level4", "leaf-hyperprior-perceptual"),
                                         ("leaf_level4", "leaf-hyperprior "),
                                         ("v3_level10", "leaf-hyperprior-v3 ")])  # fmt: skip
def test_golden_files_name_their_model(name, model):
    proc = run_cli("info", GOLDEN / f"{name}.leaf")
    assert proc.returncode == 0, proc.stderr
    assert f"model:     {model}" in proc.stdout
