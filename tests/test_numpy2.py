"""The project's code on numpy 2 (issue: Colab ships numpy 2): the second environment ``.venv-numpy2`` (numpy 2.x
over the pinned environment's other packages, made by ``make numpy2-env``) writes the same ``.leaf`` bytes and
decodes the same pixels as the pinned one. ``make test`` also runs the codec, image and metrics tests in it."""

import subprocess

import numpy as np
import pytest
from codec_samples import ROOT, leaves, run_cli
from PIL import Image

NUMPY2_PYTHON = ROOT / ".venv-numpy2" / "bin" / "python"
pytestmark = pytest.mark.skipif(not NUMPY2_PYTHON.exists(), reason="no .venv-numpy2 (make numpy2-env)")


def _numpy_version(python) -> str:
    proc = subprocess.run([str(python), "-c", "import numpy; print(numpy.__version__)"], capture_output=True,
                          text=True, check=True)  # fmt: skip
    return proc.stdout.strip()


def test_the_second_environment_has_numpy_2():
    assert int(_numpy_version(NUMPY2_PYTHON).split(".")[0]) >= 2


@pytest.mark.parametrize(
    "options", [("--level", "4"), ("--level", "5", "--roi", "auto")], ids=["uniform", "roi"]
)
def test_numpy_2_writes_byte_identical_files(tmp_path, options):
    sources = []
    for i, img in enumerate(leaves(4)):
        sources.append(tmp_path / f"leaf{i}.png")
        Image.fromarray(img).save(sources[-1])
    for env, python in (("pinned", None), ("numpy2", NUMPY2_PYTHON)):
        out = tmp_path / env
        cmd = ("compress", *sources, "--out-dir", out, *options)
        proc = run_cli(*cmd, python=python)
        assert proc.returncode == 0, proc.stderr
        proc = run_cli("decompress", *sorted(out.glob("*.leaf")), "--out-dir", out, python=python)
        assert proc.returncode == 0, proc.stderr
    for src in sources:
        a, b = (tmp_path / env / f"{src.stem}.leaf" for env in ("pinned", "numpy2"))
        assert a.read_bytes() == b.read_bytes(), src.name
        pa, pb = (np.asarray(Image.open(tmp_path / env / f"{src.stem}.png")) for env in ("pinned", "numpy2"))
        assert np.array_equal(pa, pb), src.name
