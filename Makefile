# Offline data: ../shared beside the checkout when it exists (override: make test SHARED=/path).
SHARED ?= $(abspath ../shared)
PYTHON ?= python3
ifneq ($(wildcard $(SHARED)/glue),)
export LORA_NB_SHARED_DIR ?= $(SHARED)
export LORA_NB_GLUE_DIR ?= $(SHARED)/glue
endif

.PHONY: install test demo cpu-reproduction gpu-check system-packages slurm slurm-down notebook-parameters

.make/installed: requirements.txt pyproject.toml
	$(PYTHON) -m pip install -q -r requirements.txt
	@mkdir -p .make && touch $@

install: .make/installed

# The report's PDF export needs headless Chromium and its test renders pages with pdftoppm (poppler): installed
# with apt-get when missing (sudo when not root), so that `make test` alone works on a fresh machine.
SYSTEM_PACKAGES = chromium poppler-utils
system-packages:
	@if ! { command -v chromium || command -v chromium-browser || command -v google-chrome; } >/dev/null 2>&1 \
	    || ! command -v pdftoppm >/dev/null 2>&1; then \
	  echo "installing $(SYSTEM_PACKAGES) (the PDF report and its test need them)"; \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  if ! command -v apt-get >/dev/null 2>&1; then \
	    echo "make: install Chromium and poppler (pdftoppm) with your package manager, then rerun" >&2; exit 1; fi; \
	  $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(SYSTEM_PACKAGES); \
	fi

# A real single-node SLURM for the SLURM tests (tests/runs/test_slurm.py, tests/e2e/test_slurm_minilm.py):
# .ci/slurm-up starts munged, slurmctld and slurmd as root with its own slurm.conf under /tmp/lora-nb-slurm (a
# machine's own SLURM setup is left alone); its Debian packages are installed with apt-get when missing. Without
# root or apt-get the SLURM tests skip with the reason; where make brought SLURM up (CI: root and apt-get), `make
# test` sets LORA_NB_REQUIRE_SLURM=1, so they fail instead of skipping.
SLURM_PACKAGES = slurmctld slurmd slurm-client munge
slurm:
	@if [ "$$(id -u)" != 0 ]; then echo "make: not root: the SLURM tests skip (the test cluster's daemons run as root)"; \
	elif ! command -v slurmctld >/dev/null 2>&1 && ! command -v apt-get >/dev/null 2>&1; then \
	  echo "make: no SLURM and no apt-get: the SLURM tests skip"; \
	else \
	  if ! command -v slurmctld >/dev/null 2>&1 || ! command -v slurmd >/dev/null 2>&1 \
	      || ! command -v sbatch >/dev/null 2>&1 || ! command -v munged >/dev/null 2>&1; then \
	    echo "installing $(SLURM_PACKAGES) (the SLURM tests need them)"; \
	    apt-get update -qq && env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	      $(SLURM_PACKAGES); \
	  fi; \
	  .ci/slurm-up; \
	fi

# Stop the test SLURM (only the daemons .ci/slurm-up started).
slurm-down:
	.ci/slurm-down

test: .make/installed system-packages slurm
	if [ "$$(id -u)" = 0 ] && command -v slurmctld >/dev/null 2>&1; then export LORA_NB_REQUIRE_SLURM=1; fi; \
	$(PYTHON) -m pytest -q

# Four runs (LoRA vs full fine-tuning on SST-2 and STS-B, real MiniLM), then the HTML report; ends with a short table.
demo: .make/installed
	lora-nb run params/grids/demo.yaml --report runs/demo/report

# The model notebooks' parameters cell, rewritten from RunConfig (lora_nb_utils/config.py) and params/smoke.yaml
# after a parameter or a default changes (tests/test_notebook_parameters.py fails until then).
notebook-parameters:
	$(PYTHON) -m lora_nb_utils.notebook_parameters

# The committed CPU reproduction (hours on 2 cores; resumable: rerun to continue where it stopped).
cpu-reproduction: .make/installed
	lora-nb run params/grids/cpu_minilm.yaml

# On a CUDA machine (no install step: it uses the Python environment as it is): the CUDA tests (autocast
# precisions, fp16 scaler, determinism flags), then LoRA vs PEFT vs full fine-tuning at the paper's model sizes
# (random weights) in bf16 (and RoBERTa-base in fp32), at the LoRA paper's batch sizes. JSON per run into GPU_OUT.
GPU_OUT ?= report/gpu
GPU_BENCH = $(PYTHON) -m lora_nb_utils.cli bench --quick --device cuda --parts step,memory,latency,throughput
gpu-check:
	$(PYTHON) -m pytest -q -p no:cacheprovider tests/e2e/test_cuda.py
	@mkdir -p $(GPU_OUT)
	for spec in "roberta-base 16 fp32" "roberta-base 16 bf16" "roberta-base 64 bf16" "roberta-large 4 bf16" \
	            "deberta-v2-xxlarge 8 bf16"; do set -- $$spec; \
	    $(GPU_BENCH) --model $$1 --batch-size $$2 --precision $$3 --out $(GPU_OUT)/bench_$$1_bs$$2_$$3.json || exit 1; \
	done
