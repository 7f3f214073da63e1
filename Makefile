# mmhiri: `make demo` and `make test` set the environment up first (idempotent, see
# tools/setup_env.sh), then run with .venv/bin/python.
PY := .venv/bin/python
STAMP := .venv/.mmhiri-setup-stamp
PYTEST_ARGS ?=

.PHONY: setup demo test test-fast clean-venv

$(STAMP): tools/setup_env.sh setup.py $(wildcard requirements/*.txt)
	bash tools/setup_env.sh

setup: $(STAMP)

demo: setup
	$(PY) tools/demo.py

test: setup
	$(PY) -m pytest tests -q $(PYTEST_ARGS)

# skip the tests marked slow (real-width models, Runner jobs)
test-fast: setup
	$(PY) -m pytest tests -q -m "not slow" $(PYTEST_ARGS)

clean-venv:
	rm -rf .venv
