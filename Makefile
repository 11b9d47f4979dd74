# edgec: `make demo` runs the main job on the bundled model and data, `make test` runs the tests.
# Both set up .venv (Python 3.11) on first use; a second run reuses it.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.deps-installed
# re-link the editable install when the set of package files changes (strict editable = link tree)
FILELIST := $(VENV)/.package-files
PKG_FILES := $(shell find toolchain targets models calibration -type f \( -name '*.py' -o -name '*.pt' -o -name '*.json' \) 2>/dev/null | sort)

.PHONY: setup demo test test-fast lint bench mutation clean
setup: $(VENV)/.edgec-installed

$(STAMP): constraints.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c constraints.txt "numpy<2" torch torchvision onnx onnxruntime onnxscript \
		brevitas nncf typer rich h5py nir scikit-learn safetensors matplotlib scipy "networkx<=2.8.7" "asteval<0.10" \
		torchmetrics pycocotools optuna "ray>=2.40" \
		"opencv-python-headless<4.11" "pillow<11" pytest pytest-timeout pytest-xdist jsonschema ruff mypy
	# the other SNN frameworks edgec reads (the `frameworks` extra): tests and benchmarks/interop.py use them
	$(PIP) install -q -c constraints.txt snntorch norse spikingjelly sinabs nirtorch
	# the CPU target's openvino backend (the `openvino` extra; 2026.x installs beside numpy<2)
	$(PIP) install -q -c constraints.txt openvino
	# lava-nc / lava-dl declare Requires-Python <3.11 and pin torch 2.3: install them without their deps.
	$(PIP) install -q --no-deps --ignore-requires-python lava-nc==0.10.0 lava-dl==0.6.0
	touch $@

$(FILELIST): FORCE
	@mkdir -p $(VENV); echo "$(PKG_FILES)" > $@.new; cmp -s $@.new $@ || mv $@.new $@; rm -f $@.new

$(VENV)/.edgec-installed: $(STAMP) $(FILELIST) pyproject.toml
	$(PIP) install -q --no-deps --no-build-isolation -e . --config-settings editable_mode=strict
	touch $@

demo: setup
	$(VENV)/bin/edgec demo

# pytest-xdist: one worker per core (subprocess-, compile- and Python-bound tests overlap; Lava and the
# browser test run in workers too). `.venv/bin/python -m pytest` alone runs serially, for debugging.
test: setup
	$(PY) -m pytest -n auto

# the quick local loop: no slow tests (so no real-Lava test); CI runs `make test`
test-fast: setup
	$(PY) -m pytest -n auto -m "not slow"

lint: setup
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check . && $(VENV)/bin/mypy

bench: setup
	$(PY) benchmarks/cpu_int8.py

# mutation score per module (cosmic-ray; about 1-2 h on 2 cores, not part of CI): benchmarks/results/mutation.md
mutation: setup
	$(PIP) install -q -c constraints.txt cosmic-ray
	nice -n 10 $(PY) benchmarks/mutation.py --label local

clean:
	rm -rf $(VENV) build *.egg-info

FORCE:
