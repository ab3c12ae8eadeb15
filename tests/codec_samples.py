"""Sample images and helpers shared by test_codec.py, test_fuzz.py and test_export.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from helpers import paths

ROOT = Path(__file__).resolve().parent.parent


def leaf_paths(n: int) -> list[Path]:
    """``n`` test-split leaves spread over the classes; skips the test when PlantVillage is not there."""
    from helpers.data.dataset import read_manifest, split_paths

    root = paths.data_dir()
    if not root.is_dir():
        pytest.skip(f"PlantVillage not found at {root} (set DATA_DIR)")
    found = split_paths(read_manifest(paths.MANIFEST), "test", root, limit=n)
    if not all(p.is_file() for p in found):
        pytest.skip(f"test-split images missing under {root}")
    return found


def synthetic_leaf(seed: int = 0, size: int = 256) -> np.ndarray:
    """A leaf-like test card (green ellipse with veins and noise on a grey background) for tests that need an
    image but not PlantVillage."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size - 0.5
    angle = rng.uniform(0, np.pi)
    u = xx * np.cos(angle) + yy * np.sin(angle)
    v = -xx * np.sin(angle) + yy * np.cos(angle)
    inside = (u / 0.42) ** 2 + (v / 0.22) ** 2 < 1
    veins = 0.5 + 0.5 * np.cos(40 * u + 12 * np.abs(v) * 8)
    img = np.empty((size, size, 3))
    img[...] = (0.55, 0.55, 0.5)
    img[inside] = np.stack([0.2 + 0.1 * veins, 0.45 + 0.2 * veins, 0.15 + 0.05 * veins], -1)[inside]
    img += rng.normal(0, 0.02, img.shape)
    return (img.clip(0, 1) * 255).round().astype(np.uint8)


def leaves(n: int, real: bool = False) -> list[np.ndarray]:
    """``n`` test-split leaves; without PlantVillage, synthetic ones unless ``real`` (then the test skips)."""
    from helpers.codec.imageio import read_image

    if not real and not paths.data_dir().is_dir():
        return [synthetic_leaf(i) for i in range(n)]
    return [read_image(p) for p in leaf_paths(n)]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def run_cli(*args, cwd=None, timeout=300, env=None, python=None) -> subprocess.CompletedProcess:
    """``python -m helpers ARGS`` in a fresh interpreter (the exact command a user types); ``python``: another
    environment's interpreter (default: this one's)."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([str(python or sys.executable), "-m", "helpers", *map(str, args)], cwd=cwd or ROOT, env=full_env,
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip


def assert_one_line_error(proc: subprocess.CompletedProcess, *fragments: str) -> str:
    """Exit status 2 and a single ``error: ...`` line on stderr naming ``fragments``; never a traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    for f in fragments:
        assert f in lines[0], (f, lines[0])
    return lines[0]


def tmp_leftovers(folder: Path) -> list[Path]:
    return [p for p in Path(folder).rglob("*") if p.name.endswith(".tmp")]


def cli_files(folder: Path) -> tuple[Path, Path]:
    """A 64x64 leaf in ``folder`` as PNG and as a .leaf file (level 2), written through the command line."""
    from PIL import Image

    from helpers.commands import main

    Image.fromarray(synthetic_leaf(0, 64)).save(folder / "ref.png")
    assert main(["compress", str(folder / "ref.png"), "-o", str(folder / "ref.leaf"), "--level", "2"]) == 0
    return folder / "ref.png", folder / "ref.leaf"


def run_in_process(capsys, *argv) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of ``python -m helpers ARGV`` run in this process."""
    from helpers.commands import main

    capsys.readouterr()
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def one_error_line(capsys, *argv) -> str:
    """The single ``error:`` line of a failing command (exit status 2), run in this process."""
    code, _, err = run_in_process(capsys, *argv)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (code, err)
    return lines[0]
