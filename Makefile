# Attention course — every target creates .venv first if it is missing.
#   make lab     set up, then open the course in JupyterLab
#   make test    set up, then run every check CI runs (release sync, lint, unit tests, nbval)
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The CPU build of torch. Where pip would otherwise fetch a multi-GB CUDA build (a laptop with plain PyPI), use
#   make setup TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu"
TORCH_SPEC ?= torch==2.13.0
TORCH_PIP_ARGS ?=
JOBS ?= 2
NBVAL_ARGS := -p no:cacheprovider --nbval-current-env --nbval-cell-timeout=600 -n $(JOBS) --dist loadscope
STRICT := --nbval --nbval-sanitize-with tests/nbval_sanitize.cfg

.PHONY: setup system-deps triton wheelhouse grade bench lab test test-unit test-notebooks test-gpu release check-release record lint format clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check $(TORCH_PIP_ARGS) "$(TORCH_SPEC)"
	$(PY) -m pip install --disable-pip-version-check -e ".[dev]"
	touch $(STAMP)

# Debian packages the tests use when they can be had: chromium (browser test), bubblewrap (grader sandbox).
# Without root or apt the tests that need them skip, or fall back, and say why.
SYSTEM_PACKAGES := chromium bubblewrap
system-deps:
	@missing=""; command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v bwrap >/dev/null || missing="$$missing bubblewrap"; \
	if [ -z "$$missing" ]; then echo "system packages present: $(SYSTEM_PACKAGES)"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing$$missing"; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing >/dev/null 2>&1 || \
	  { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing >/dev/null 2>&1; } || \
	  echo "could not install$$missing: the tests that need it will skip or fall back"; \
	else echo "missing$$missing (needs root apt-get): the tests that need it will skip or fall back"; fi

# Triton's CPU interpreter runs notebook 07's GPU kernel in tests/test_flash_triton.py, so the kernel is checked on
# every machine, GPU or not. Installed only where triton is missing (CUDA builds of torch bring their own); where no
# wheel exists (not Linux x86-64) those tests skip. `make test TRITON_SPEC=` skips the install (about 1 GB).
TRITON_SPEC ?= triton==3.9.0
TRITON_STAMP := $(VENV)/.triton
triton: $(TRITON_STAMP)

$(TRITON_STAMP): $(STAMP)
	@if [ -z "$(TRITON_SPEC)" ]; then echo "TRITON_SPEC is empty: not installing triton"; \
	elif $(PY) -c "import triton" 2>/dev/null; then echo "triton present: $$($(PY) -c 'import triton; print(triton.__version__)')"; \
	else $(PY) -m pip install --disable-pip-version-check -q "$(TRITON_SPEC)" || \
	  echo "could not install $(TRITON_SPEC): the Triton interpreter tests will skip"; fi
	touch $(TRITON_STAMP)

# Jupyter refuses to start as root (containers, CI images) unless told: add --allow-root only then.
LAB_ARGS ?= $(if $(filter 0,$(shell id -u)),--allow-root)
lab: setup
	$(VENV)/bin/jupyter lab $(LAB_ARGS) notebooks/

test: setup system-deps triton check-release lint test-unit test-notebooks

test-unit: setup triton
	$(PY) -m pytest -n $(JOBS) tests

# Strict nbval compares every output with the one stored in solutions/; lax runs the student
# notebooks (every exercise unsolved) top to bottom.
test-notebooks: setup
	$(PY) -m pytest $(NBVAL_ARGS) $(STRICT) solutions/
	$(PY) -m pytest $(NBVAL_ARGS) --nbval-lax notebooks/

# The same notebook run on a CUDA GPU; fails if CUDA is not actually used.
test-gpu: setup
	COURSE_DEVICE=cuda COURSE_REQUIRE_CUDA=1 $(PY) -m pytest $(NBVAL_ARGS) $(STRICT) solutions/

release: setup
	$(PY) -m course_utils.release

check-release: setup
	$(PY) -m course_utils.release --check

# Re-execute solution notebooks and store their outputs: make record NB=solutions/01_soft_weights.ipynb
NB ?= solutions/*.ipynb
record: setup
	$(PY) -m course_utils.record $(NB)

# Grade a folder of submissions: SUBMISSIONS/<student>/<NN_name>.ipynb -> grades.csv, grades.json, feedback/
SUBMISSIONS ?= submissions
grade: setup
	$(PY) -m course_utils.grade $(SUBMISSIONS) --out grades.csv --feedback feedback --jobs $(JOBS)

# Naive vs tiled vs torch SDPA, n = 512..16384, forward and forward+backward: table, bench_results/bench.csv and .png
bench: setup
	$(PY) -m course_utils.bench --threads 1 --out bench_results

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# Offline classroom install. `make wheelhouse` collects a wheel of every package the course uses, at the exact
# versions of this .venv (tested), into wheelhouse/; WITH_TORCH=0 leaves torch out, for machines that already have
# a CUDA build. On the classroom machine (same OS, CPU architecture and Python version):
#   python3 -m venv .venv && .venv/bin/pip install --no-index --find-links wheelhouse -r wheelhouse/requirements.txt -e ".[dev]"
WITH_TORCH ?= 1
wheelhouse: setup
	rm -rf wheelhouse && mkdir -p wheelhouse
	$(PY) -m pip freeze --exclude-editable --all | grep -v -i -E '^(course[-_]utils|pip|triton)[=@ ]' \
	  $(if $(filter 0,$(WITH_TORCH)),| grep -v -i -E '^torch[=@ ]') > wheelhouse/requirements.txt
	$(PY) -m pip wheel --disable-pip-version-check -q --no-deps $(TORCH_PIP_ARGS) -w wheelhouse -r wheelhouse/requirements.txt
	$(PY) -m pip wheel --disable-pip-version-check -q --no-deps -w wheelhouse .
	@echo "wheelhouse/: $$(ls wheelhouse/*.whl | wc -l) wheels, $$(du -sh wheelhouse | cut -f1)"

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
