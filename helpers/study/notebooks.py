"""Run the study's notebooks with papermill, and the profile table that sizes them.

Each notebook has one cell tagged ``parameters`` (``profile``, ``data_dir``, ...); papermill injects the values
given here after it. The first code cell after it calls ``setup(profile, data_dir)``, which returns the profile's
sizes (``PROFILES[profile]``) and the data folder, so the smoke and full runs differ in this one table only: no
notebook branches on the profile's name. Executed copies are written to ``outputs/notebooks/<profile>/`` (ignored
by git); the committed notebooks stay free of outputs.
"""

from __future__ import annotations

import functools
import time
import warnings
from pathlib import Path

from helpers import paths
from helpers.codec.errors import LeafCodecError

NOTEBOOKS = paths.ROOT / "notebooks"
ORDER = (
    "01_preprocess",
    "02_train",
    "03_rd_curves",
    "04_visualise",
    "05_export",
    "06_task_fidelity",
    "07_roi",
)

# smoke: seconds per notebook, a check that the pipeline runs end to end; full: the study's numbers.
# ``None`` means "all". Notebooks add the keys they need to both profiles.
SMOKE_OUT = paths.OUTPUTS / "notebooks" / "smoke"  # smoke runs never overwrite the study's outputs
PROFILES = {
    "smoke": {
        "n_images": 6,  # images per evaluated split
        "n_test": 4,  # test-split images in the R-D study (evenly spread over classes)
        "n_holdout": 2,  # images of the held-out crop (Potato)
        "n_kodak": 1,  # Kodak photographs (03_rd_curves 3.8; 768x512, every codec)
        "setting_stride": 3,  # every k-th codec setting / quality level in the R-D study
        "n_augmentations": 8,
        "verify_manifest": False,  # re-scan the data and compare with the committed manifest
        "batch_size": 2,
        "num_workers": 0,
        "train_steps": 4,  # a tiny run that stops halfway and resumes
        "large_image": False,  # the 12-megapixel check
        "figures": SMOKE_OUT / "figures",
        "tables": SMOKE_OUT / "tables",
        "results": SMOKE_OUT / "results",
        "export": SMOKE_OUT / "export",  # TorchScript / ONNX files (05_export)
        "n_diagnosis": 3,  # 06_task_fidelity: test images coded by every codec, balanced over classes
        "n_original_test": 15,  # 06: original test images for the classifier's accuracy and confusion matrix
        "n_train_decoded": 3,  # 06: training images decoded once per codec to fine-tune the head on (balanced)
        "workers": 1,  # 06: processes coding the images (each on one thread)
        "n_photos": 1,  # 07_roi: Wikimedia validation photos (~1 MP)
        "update_readme": False,
    },
    "full": {
        "n_images": None,
        "n_test": 100,  # with n_holdout 30 and all of Kodak, 03 takes ~20 min on 2 idle cores (150/45: +4 min),
        # and ~5 min more for v3 in 3.10 (estimated: 10 levels, ~10 s CPU per Kodak image, ~2 s per leaf)
        "n_holdout": 30,
        "n_kodak": 24,  # all of Kodak, so the published curves compare like with like
        "setting_stride": 1,
        "n_augmentations": 8,
        "verify_manifest": True,
        "batch_size": 16,
        "num_workers": None,  # helpers.data.make_loader's default
        "train_steps": None,  # the shipped recipe's
        "large_image": True,
        "figures": paths.FIGURES,
        "tables": paths.TABLES,
        "results": paths.RESULTS,
        "export": paths.OUTPUTS / "export",
        "n_diagnosis": 75,  # 5 per class; ~5.3 s CPU per leaf (half of it AVIF 4:4:4 s4): 06 ~5 min
        "n_original_test": None,
        "n_train_decoded": 75,  # 5 per class
        "workers": 2,
        "n_photos": None,  # 07_roi: all the Wikimedia validation photos
        "update_readme": True,
    },
}


def profile_settings(profile: str) -> dict:
    if profile not in PROFILES:
        raise LeafCodecError(f"unknown profile {profile!r} (choose from {', '.join(PROFILES)})")
    return PROFILES[profile]


def setup(profile: str, data_dir=None) -> tuple[dict, Path]:
    """Every notebook's set-up, called once after its parameters: installs the project on Colab
    (``helpers.study.colab``), checks the profile and the data folder (``data_dir``, else ``$DATA_DIR``, else the
    downloaded copy) and returns ``(PROFILES[profile], data folder)``."""
    from helpers.data import dataset as data
    from helpers.study import colab

    settings = profile_settings(profile)
    colab.setup_colab()
    warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm: text progress bars are fine here
    root = data.check_data_dir(Path(data_dir).expanduser().resolve() if data_dir else paths.data_dir())
    print(f"profile: {profile}  data: {root}  figures: {settings['figures']}")
    return settings, root


def available() -> list[str]:
    """Notebooks present, in the study's order (then any others, alphabetically)."""
    present = {p.stem for p in NOTEBOOKS.glob("*.ipynb")}
    return [n for n in ORDER if n in present] + sorted(present - set(ORDER))


def declared_parameters(name: str) -> set[str]:
    """Names assigned in the notebook's ``parameters`` cell."""
    import papermill as pm

    return set(pm.inspect_notebook(str(NOTEBOOKS / f"{Path(name).stem}.ipynb")))


def run_notebook(name: str, profile: str = "smoke", out_dir: Path | None = None, data_dir=None,
                 kernel_name: str | None = None, log_output: bool = False, **params) -> Path:  # fmt: skip
    """Execute ``notebooks/<name>.ipynb`` into ``<out_dir>/<name>.ipynb`` and return that path.

    The kernel starts in ``notebooks/`` (as in Jupyter); the notebooks find the repository root themselves.
    ``kernel_name`` defaults to the notebook's own (``python3``), which jupyter_client starts with this
    interpreter. A failing cell raises LeafCodecError naming the cell; the executed copy shows the traceback.
    """
    import papermill as pm

    profile_settings(profile)
    src = NOTEBOOKS / f"{Path(name).stem}.ipynb"
    if not src.is_file():
        raise LeafCodecError(
            f"no notebook {src.name} in {NOTEBOOKS} (have: {', '.join(available()) or 'none'})"
        )
    out_dir = Path(out_dir) if out_dir is not None else paths.OUTPUTS / "notebooks" / profile
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / src.name
    params = {"profile": profile, "data_dir": str(data_dir) if data_dir else None, **params}
    try:
        pm.execute_notebook(
            str(src),
            str(out),
            parameters=params,
            cwd=str(NOTEBOOKS),
            kernel_name=kernel_name,
            progress_bar=False,
            log_output=log_output,
        )
    except pm.PapermillExecutionError as exc:
        raise LeafCodecError(
            f"{src.name} failed in cell {exc.exec_count}: {exc.ename}: {exc.evalue} (executed copy: {out})"
        ) from None
    return out


def run_all(names=None, profile: str = "smoke", out_dir: Path | None = None, data_dir=None, log=None,
            **common) -> list[Path]:  # fmt: skip
    """Run ``names`` (default: every notebook present) in the study's order; returns the executed copies.
    ``common`` parameters (e.g. ``retrain``) go to the notebooks that declare them in their parameters cell."""
    log = log or functools.partial(print, flush=True)
    names = [Path(n).stem for n in names] if names else available()
    done = []
    for name in names:
        t0 = time.perf_counter()
        log(f"running {name} ({profile}) ...")
        declared = declared_parameters(name)
        extra = {k: v for k, v in common.items() if k in declared}
        out = run_notebook(name, profile=profile, out_dir=out_dir, data_dir=data_dir, **extra)
        log(f"  {time.perf_counter() - t0:.0f} s -> {out}")
        done.append(out)
    return done
