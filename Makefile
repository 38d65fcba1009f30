# Attention course — every target creates .venv first if it is missing.
#   make lab     set up, then open your own copy of the course (my-notebooks/) in JupyterLab
#   make test    set up, then run every check CI runs (release sync, lint, unit tests, nbval)
# PYTHON picks the interpreter .venv is built from (make setup PYTHON=python3.12); it is recorded in .venv/.python
# and a later PYTHON= naming another interpreter stops with how to rebuild, instead of silently using the old venv.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTHON_RECORD := $(VENV)/.python
# "<version> <real path>" of an interpreter, and of the one a venv was made from (for a venv made before the record)
PYTHON_ID := import os, sys; print(sys.version.split()[0], os.path.realpath(sys.executable))
VENV_BASE_ID := import os, sys; print(sys.version.split()[0], os.path.realpath(sys._base_executable))
# The CPU build of torch. Where pip would otherwise fetch a multi-GB CUDA build (a laptop with plain PyPI), use
#   make setup TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu"
TORCH_SPEC ?= torch==2.13.0
TORCH_PIP_ARGS ?=
JOBS ?= 2
NBVAL_ARGS := -p no:cacheprovider --nbval-current-env --nbval-cell-timeout=600 -n $(JOBS) --dist loadscope
STRICT := --nbval --nbval-sanitize-with tests/nbval_sanitize.cfg
# solutions/ are recorded with the portable kernels and 2 threads (course_utils/helpers/kernel_sets.py, RECORDING); strict
# nbval runs them with this machine's own kernels and 1 thread (TESTING), so every `make test` proves that what it
# compares does not depend on the floating-point path (docs/architecture.md, "What strict nbval compares").
TESTING_KERNELS := env -u ATEN_CPU_CAPABILITY -u MKL_ENABLE_INSTRUCTIONS -u ONEDNN_MAX_CPU_ISA COURSE_THREADS=1

.PHONY: setup check-python system-deps triton nbgrader-install nbgrader-source wheelhouse grade bench lab progress test test-unit test-notebooks test-gpu release check-release record claims lint format clean

setup: check-python $(STAMP)

# Fails rather than rebuilds: a rebuild would silently throw away what was installed into .venv by hand
# (a CUDA build of torch, see README) and download everything again.
check-python:
	@if [ -x $(PY) ] && [ "$(origin PYTHON)" != file ]; then \
	  wanted=$$($(PYTHON) -c '$(PYTHON_ID)') || { echo "error: PYTHON=$(PYTHON) does not run" >&2; exit 1; }; \
	  built=$$(cat $(PYTHON_RECORD) 2>/dev/null || $(PY) -c '$(VENV_BASE_ID)'); \
	  if [ "$$wanted" != "$$built" ]; then \
	    echo "error: $(VENV) was built with Python $$built, but PYTHON=$(PYTHON) is Python $$wanted." >&2; \
	    echo "  make never replaces an existing $(VENV). To rebuild it with $(PYTHON):" >&2; \
	    echo "    make clean && make setup PYTHON=$(PYTHON)     (or: rm -rf $(VENV))" >&2; \
	    echo "  or leave PYTHON unset to keep using $(VENV)." >&2; exit 1; fi; fi

$(STAMP): pyproject.toml
	test -x $(PY) || { $(PYTHON) -m venv $(VENV) && $(PYTHON) -c '$(PYTHON_ID)' > $(PYTHON_RECORD); }
	test -f $(PYTHON_RECORD) || $(PY) -c '$(VENV_BASE_ID)' > $(PYTHON_RECORD)
	$(PY) -m pip install --disable-pip-version-check $(TORCH_PIP_ARGS) "$(TORCH_SPEC)"
	$(PY) -m pip install --disable-pip-version-check -e ".[lab,dev]"
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

# $(call install_for_tests,SPEC_VARIABLE,module,tests that skip without it): pip install $(SPEC_VARIABLE) unless the
# module imports already or the variable is empty; a failed install only makes those tests skip. Then the stamp.
define install_for_tests
	@if [ -z "$($(1))" ]; then echo "$(1) is empty: not installing $(2)"; \
	elif $(PY) -c "import $(2)" 2>/dev/null; then echo "$(2) present: $$($(PY) -c 'import $(2); print($(2).__version__)')"; \
	else $(PY) -m pip install --disable-pip-version-check -q "$($(1))" || \
	  echo "could not install $($(1)): $(3) will skip"; fi
	touch $@
endef

$(TRITON_STAMP): $(STAMP)
	$(call install_for_tests,TRITON_SPEC,triton,the Triton interpreter tests)

# nbgrader runs tests/test_nbgrader.py (generate_assignment -> autograde on notebook 01). Installed by `make test`
# only; where it cannot be installed that test skips and says why. `make test NBGRADER_SPEC=` skips the install.
NBGRADER_SPEC ?= nbgrader==0.9.6
NBGRADER_STAMP := $(VENV)/.nbgrader
nbgrader-install: $(NBGRADER_STAMP)

$(NBGRADER_STAMP): $(STAMP)
	$(call install_for_tests,NBGRADER_SPEC,nbgrader,tests/test_nbgrader.py)

# nbgrader wants nbgrader/source/<assignment>/<notebook>.ipynb: one assignment per notebook, each a link to the
# notebook in solutions/ (so it never goes stale). nbgrader_config.py puts nbgrader's course folder at nbgrader/.
nbgrader-source:
	@for notebook in solutions/[0-9][0-9]_*.ipynb; do \
	  name=$$(basename $$notebook .ipynb); mkdir -p nbgrader/source/$$name; \
	  ln -sfn ../../../$$notebook nbgrader/source/$$name/$$name.ipynb; \
	  echo "nbgrader/source/$$name/$$name.ipynb -> $$notebook"; done

# Learners work in their own copy, my-notebooks/ (ignored by git): made from notebooks/ on first use, never
# overwritten; notebooks the course adds later are copied in (each copy is named on stdout).
LEARNER_COPY ?= my-notebooks
# Jupyter refuses to start as root (containers, CI images) unless told: add --allow-root only then.
LAB_ARGS ?= $(if $(filter 0,$(shell id -u)),--allow-root)
lab: setup
	$(PY) -m course_utils.progress --copy-only --copy $(LEARNER_COPY)
	$(VENV)/bin/jupyter lab $(LAB_ARGS) $(LEARNER_COPY)/

# Runs every check of my-notebooks/ headless: exercises passed / failing / not started, and the next one to do.
progress: setup
	$(PY) -m course_utils.progress --copy $(LEARNER_COPY)

test: setup system-deps triton nbgrader-install check-release lint test-unit test-notebooks

test-unit: setup triton nbgrader-install
	$(PY) -m pytest -n $(JOBS) --durations=10 tests

# Strict nbval compares every output not tagged nbval-ignore-output with the one stored in solutions/; lax runs
# the student notebooks (every exercise unsolved) top to bottom.
test-notebooks: setup
	$(TESTING_KERNELS) $(PY) -m pytest $(NBVAL_ARGS) $(STRICT) solutions/
	$(PY) -m pytest $(NBVAL_ARGS) --nbval-lax notebooks/

# The same strict run on a CUDA GPU, against the same CPU-recorded outputs: it can pass because strict nbval compares
# only what does not depend on the floating-point path. Fails if CUDA is not actually used.
test-gpu: setup
	COURSE_DEVICE=cuda COURSE_REQUIRE_CUDA=1 $(TESTING_KERNELS) $(PY) -m pytest $(NBVAL_ARGS) $(STRICT) solutions/

release: setup
	$(PY) -m course_utils.release

check-release: setup
	$(PY) -m course_utils.release --check

# Re-execute solution notebooks and store their outputs (portable kernels, 2 threads, stamped in each notebook's
# metadata): make record NB=solutions/01_soft_weights.ipynb
NB ?= solutions/*.ipynb
record: setup
	$(PY) -m course_utils.tooling.record $(NB)

# Grade a folder of submissions: SUBMISSIONS/<student>/<NN_name>.ipynb -> grades.csv, grades.json, feedback/
SUBMISSIONS ?= submissions
grade: setup
	$(PY) -m course_utils.grade $(SUBMISSIONS) --out grades.csv --feedback feedback --jobs $(JOBS)

# Every asserted figure of the course under each kernel set x thread count x 3 seeds, with its smallest margin
# (long: about an hour on 2 cores). make claims NB=solutions/02_bahdanau_attention.ipynb for one notebook.
claims: setup
	$(PY) -m course_utils.tooling.claims_report $(filter-out solutions/*.ipynb,$(NB)) --jobs $(JOBS) --out claims.json

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
#   python3 -m venv .venv && .venv/bin/pip install --no-index --find-links wheelhouse -r wheelhouse/requirements.txt -e ".[lab,dev]"
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
