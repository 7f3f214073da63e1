# mmhiri: `make demo` and `make test` set the environment up first (idempotent, see
# tools/setup_env.sh), then run with .venv/bin/python.
PY := .venv/bin/python
PYTEST_ARGS ?=

.PHONY: setup demo test test-fast clean-venv

# tools/setup_env.sh keeps its own stamp (script, requirements, setup.py and the mmcv switches
# MMHIRI_MMCV_OPS / MMHIRI_CUDA_ARCH): with nothing to do it only compares it (~0.01 s).
setup:
	bash tools/setup_env.sh

demo: setup
	$(PY) tools/demo.py

test: setup
	$(PY) -m pytest tests -q $(PYTEST_ARGS)

# skip the tests marked slow (real-width models, Runner jobs)
test-fast: setup
	$(PY) -m pytest tests -q -m "not slow" $(PYTEST_ARGS)

clean-venv:
	rm -rf .venv
