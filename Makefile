# Two entry points (see README.md): `make demo` and `make test`, each from a fresh clone.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.funknn-installed
SOURCES := pyproject.toml setup.py $(wildcard csrc/*.cpp csrc/*.h csrc/cuda/*.cu csrc/cuda/*.cuh)

.PHONY: setup test demo demo-op lint bench report package-check

setup: $(STAMP)

$(STAMP): $(SOURCES)
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# The pinned CPU torch first: an unpinned torch would pull a multi-GB CUDA build.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet setuptools wheel ninja numpy
	$(PY) -m pip install --quiet --no-build-isolation -e ".[test]"
	touch $(STAMP)

lint: setup
	$(PY) -m ruff check .

test: setup lint
	$(PY) -m pytest -q -p no:cacheprovider
	$(MAKE) package-check

# Builds the sdist and from it the wheel (one more compile of the extension, ~2 min), installs
# the wheel outside the tree and runs the demo there on a small crop (scripts/check_package.sh).
package-check: setup
	PY=$(PY) bash scripts/check_package.sh

# The main job: x3.5 and x4 super-resolution of a held-out bundled photograph with the shipped
# weights; writes PNGs and a comparison figure into out/demo and prints PSNR against bicubic.
demo: setup
	$(VENV)/bin/funknn superres --demo -o out/demo

# The core op alone: patch sampling on a bundled photograph with every available backend.
demo-op: setup
	$(PY) -m funknn_fast.cli.demo_op

# Regenerates every benchmark table and BENCHMARKS.md (slow: see benchmarks/run_all.py --help).
bench: setup
	$(PY) benchmarks/run_all.py

report:
	$(PY) benchmarks/make_report.py
