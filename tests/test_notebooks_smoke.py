"""Every study notebook after 01 runs end to end in the smoke profile (01 is exercised in test_data.py),
and writes the files the study promises."""

import os
from pathlib import Path

import nbformat
import pytest

from helpers import paths
from helpers.study import notebooks

DATA_DIR = os.environ.get("DATA_DIR")
SMOKE = notebooks.PROFILES["smoke"]
PERCEPTUAL = paths.PERCEPTUAL_CHECKPOINT.is_file()  # shipped: the study measures both models
EXPECTED = {  # files each notebook must (re)write in the smoke profile
    "02_train": [SMOKE["figures"] / "training_curves.png"],
    "03_rd_curves": [SMOKE["tables"] / "bd_rate.csv", SMOKE["tables"] / "table2_methods.md",
                     SMOKE["figures"] / "rd_curves.png", SMOKE["results"] / "rd_test_ours.csv",
                     SMOKE["figures"] / "rd_curves_kodak.png", SMOKE["tables"] / "bd_rate_kodak.csv",
                     SMOKE["figures"] / "fidelity_curves.png", SMOKE["tables"] / "which_model.csv",
                     SMOKE["tables"] / "which_model_points.csv", SMOKE["figures"] / "rd_curves_which_model_kodak.png"]
                    + ([SMOKE["tables"] / "perceptual_vs_mse.csv"] if PERCEPTUAL else []),
    "04_visualise": [SMOKE["figures"] / "visual_matched.png", SMOKE["tables"] / "edge_fidelity.csv",
                     SMOKE["figures"] / "bit_allocation.png"]
                    + ([SMOKE["figures"] / "lpips_pairs_perceptual.png"] if PERCEPTUAL else []),
    "05_export": [SMOKE["tables"] / "export_parity.csv"],
    "06_task_fidelity": [SMOKE["figures"] / "diagnosis_accuracy.png", SMOKE["figures"] / "diagnosis_confusion.png",
                         SMOKE["tables"] / "bits_for_diagnosis.csv", SMOKE["tables"] / "diagnosis_train_on_decoded.csv",
                         SMOKE["results"] / "diagnosis_per_image.csv"],
    "07_roi": [SMOKE["figures"] / "roi_masks.png", SMOKE["figures"] / "roi_bits.png",
               SMOKE["tables"] / "roi_bd_rate_test.csv", SMOKE["tables"] / "roi_headline.csv",
               SMOKE["tables"] / "roi_diagnosis_accuracy.csv", SMOKE["tables"] / "roi_map_bytes.csv",
               SMOKE["tables"] / "roi_hyperprior_ablation.csv"],
}  # fmt: skip


@pytest.mark.slow
@pytest.mark.skipif(not DATA_DIR or not Path(DATA_DIR).is_dir(), reason="needs DATA_DIR (PlantVillage)")
@pytest.mark.parametrize("name", [n for n in notebooks.available() if n != "01_preprocess"])
def test_notebook_runs_in_smoke_profile(name, tmp_path):
    for path in EXPECTED.get(name, []):
        path.unlink(missing_ok=True)
    out = notebooks.run_notebook(
        name, profile="smoke", out_dir=tmp_path, data_dir=DATA_DIR
    )  # raises if a cell fails
    nb = nbformat.read(out, as_version=4)
    printed = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    # The notebook ran with the injected parameters, not its own defaults (profile = "full").
    assert f"profile: smoke  data: {Path(DATA_DIR).resolve()}" in printed
    missing = [str(p) for p in EXPECTED.get(name, []) if not p.is_file()]
    assert not missing, f"{name} did not write {missing}"
