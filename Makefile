# Fresh machine: Python 3.11+, pip and make. uv is bootstrapped into .tools/ and the
# environment is built from the committed uv.lock (never re-resolved here), with the extras
# the tests use: pipeline (ffm-train), rig (ffm-rig serve), server (a tracking server).
PYTHON ?= python3
UV_VERSION ?= 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
export UV_PROJECT_ENVIRONMENT := $(VENV)

.PHONY: run test lint setup lock bench clean

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet "uv==$(UV_VERSION)"

# --compile-bytecode: the environment's .pyc are written once here, so that every process (each
# Ray worker included) imports Ray, MLflow and NumPy without compiling them, even where
# PYTHONDONTWRITEBYTECODE is set; the project's own sources are compiled before each run.
$(VENV)/.synced: $(UV) uv.lock pyproject.toml
	$(UV) sync --frozen --compile-bytecode --python $(PYTHON) --extra pipeline --extra rig --extra server
	touch $@

BYTECODE = $(VENV)/bin/python -m compileall -q -j 0 optics pipeline

setup: $(VENV)/.synced

run: setup
	@$(BYTECODE)
	$(VENV)/bin/ffm-train

test: setup
	@$(BYTECODE)
	$(VENV)/bin/python -m pytest

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

lock: $(UV)
	$(UV) lock --python $(PYTHON)

clean:
	rm -rf $(TOOLS) $(VENV)
