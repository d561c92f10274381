# Offline data: ../shared beside the checkout when it exists (override: make test SHARED=/path).
SHARED ?= $(abspath ../shared)
PYTHON ?= python3
ifneq ($(wildcard $(SHARED)/glue),)
export LORA_NB_SHARED_DIR ?= $(SHARED)
export LORA_NB_GLUE_DIR ?= $(SHARED)/glue
endif

.PHONY: install test demo cpu-reproduction

.make/installed: requirements.txt pyproject.toml
	$(PYTHON) -m pip install -q -r requirements.txt
	@mkdir -p .make && touch $@

install: .make/installed

test: .make/installed
	$(PYTHON) -m pytest -q

demo: .make/installed
	lora-nb run params/grids/demo.yaml

# The committed CPU reproduction (hours on 2 cores; resumable: rerun to continue where it stopped).
cpu-reproduction: .make/installed
	lora-nb run params/grids/cpu_minilm.yaml
