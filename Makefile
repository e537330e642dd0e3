# Set-up and entry points. `make test` and `make bench` work from a fresh clone (no GPU, no network but PyPI).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.crossenc-installed
EXTRAS ?= demo,fast,int8,onnx,openvino,bench,serve,ray,test
BENCH_ARGS ?=
TORCH_INDEX ?=  # e.g. https://download.pytorch.org/whl/cpu where PyPI would give the CUDA wheel

.PHONY: install test test-fast bench bench-full clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch pinned so pip takes the CPU build on disk instead of a multi-GB CUDA download
	$(PY) -m pip install -q torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(PY) -m pip install -q -e ".[$(EXTRAS)]" torch==2.13.0
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

bench: $(STAMP)
	$(PY) -m crossenc.cli bench --quick $(BENCH_ARGS)

bench-full: $(STAMP)
	$(PY) -m crossenc.cli bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .benchmarks
