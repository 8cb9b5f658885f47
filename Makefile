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
	touch $(STAMP)

# Main job: a short real training run of the notebook's batch-norm CNN (replaced by
# `cifarkit bench` of the shipped models once they exist).
demo: setup
	$(VENV)/bin/cifarkit train cnn-batchnorm --epochs 3 --limit 10000 \
	  $(if $(DATA),--data $(DATA),) --out runs/demo

test: setup
	$(VENV)/bin/ruff check toolkit tests benchmarks
	CIFARKIT_DATA=$(DATA) $(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check toolkit tests benchmarks

clean:
	rm -rf $(VENV) runs .pytest_cache
