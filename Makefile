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

.PHONY: setup lab test test-unit test-notebooks test-gpu release check-release record lint format clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check $(TORCH_PIP_ARGS) "$(TORCH_SPEC)"
	$(PY) -m pip install --disable-pip-version-check -e ".[dev]"
	touch $(STAMP)

lab: setup
	$(VENV)/bin/jupyter lab notebooks/

test: setup check-release lint test-unit test-notebooks

test-unit: setup
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

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
