# Offline data: ../shared beside the checkout when it exists (override: make test SHARED=/path).
SHARED ?= $(abspath ../shared)
PYTHON ?= python3
ifneq ($(wildcard $(SHARED)/glue),)
export LORA_NB_SHARED_DIR ?= $(SHARED)
export LORA_NB_GLUE_DIR ?= $(SHARED)/glue
endif

.PHONY: install test demo

.make/installed: requirements.txt pyproject.toml
	$(PYTHON) -m pip install -q -r requirements.txt
	@mkdir -p .make && touch $@

install: .make/installed

test: .make/installed
	$(PYTHON) -m pytest -q

demo: .make/installed
	lora-nb train --model minilm --task sst2 --max-train-samples 3000 --epochs 1 --output-dir runs/demo
