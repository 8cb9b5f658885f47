# The README's two commands live here: `make demo` (main job) and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DATA   ?= $(if $(CIFARKIT_DATA),$(CIFARKIT_DATA),$(wildcard ../shared/data/cifar10))

.PHONY: setup demo test lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	$(PY) -m pip install --quiet --no-deps "imagecorruptions-imaug>=1.1.5,<1.2"
	touch $(STAMP)

# Main job: benchmark the shipped models (exported/) on the CIFAR-10 test split: accuracy,
# per-class errors, confusions and latency on this machine's CPU (+ CUDA when active).
# --quick: the default model (exported/default) on the whole sweep, the others lighter, so
# it takes about 2 minutes on 2 cores; `cifarkit bench` without it is the full sweep.
demo: setup
	$(VENV)/bin/cifarkit bench --quick $(if $(DATA),--data $(DATA),) \
	  --json runs/demo/bench.json --markdown runs/demo/RESULTS.md

test: setup
	$(VENV)/bin/ruff check toolkit tests benchmarks
	$(VENV)/bin/lint-imports
	CIFARKIT_DATA=$(DATA) $(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check toolkit tests benchmarks
	$(VENV)/bin/lint-imports

clean:
	rm -rf $(VENV) runs .pytest_cache
