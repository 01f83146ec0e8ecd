# fcnlab: every target bootstraps .venv (pinned installs) itself, so a new machine needs only `make <target>`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
SEEDS  ?= 1
TTA    ?= 0
INFER  ?= msflip
SWEEP_DIR ?= results/runs/table2_$(shell date +%Y%m%d_%H%M%S)
SEED_LIST := $(shell seq -s, 0 $$(( $(SEEDS) - 1 )))
# torchfcn 1.9.7, the peer implementation: make test compares fcnlab with it on the same weights
# (never skipped under CI=true), make bench times both. --no-deps: its own pins are for old torch.
PEERS  := $(VENV)/.peers-torchfcn-1.9.7
VOC    ?=
WEIGHTS ?=

.PHONY: help install peers test test-fast lint reproduce-table2 eval-tta report bench verify-voc gpu-check clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	@rm -f $(VENV)/.installed-* && touch $@

help:  ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' Makefile | sed 's/:.*## /\t/'

install: $(STAMP)  ## create .venv and install fcnlab with its pinned dependencies

$(PEERS): $(STAMP)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[bench]'
	$(PY) -m pip install -q --disable-pip-version-check --no-deps torchfcn==1.9.7
	@touch $@

peers: $(PEERS)  ## the bench extra and torchfcn==1.9.7 (--no-deps), for make test and make bench

lint: $(STAMP)  ## ruff over src/ and tests/
	$(VENV)/bin/ruff check .

test: lint $(PEERS)  ## lint, then the whole test suite (slow end-to-end tests and torchfcn comparisons included)
	$(PY) -m pytest

test-fast: $(STAMP)  ## the test suite without the slow end-to-end runs
	$(PY) -m pytest -m "not slow"

reproduce-table2: $(STAMP)  ## Table 2 on the embedded default (SEEDS=3 for mean ± std; TTA=1 adds an ms+flip column); see results/table2.md
	@set -u; t0=$$(date +%s); \
	$(VENV)/bin/fcnlab-train --config-name table2 pretrain_only=true task_name=pretrain init_from=null || exit $$?; \
	t1=$$(date +%s); echo "== pretrain (data + backbone): $$((t1 - t0)) s"; \
	$(VENV)/bin/fcnlab-train -m --config-name table2 "seed=$(SEED_LIST)" hydra.sweep.dir=$(SWEEP_DIR); sweep=$$?; \
	t2=$$(date +%s); echo "== sweep (all rows): $$((t2 - t1)) s"; tta=0; \
	if [ "$(TTA)" = 1 ]; then $(VENV)/bin/fcnlab-eval sweep=$(SWEEP_DIR) infer=$(INFER); tta=$$?; \
	  echo "== eval $(INFER) (no retraining): $$(( $$(date +%s) - t2 )) s"; fi; t3=$$(date +%s); \
	$(VENV)/bin/fcnlab-report $(SWEEP_DIR) --out results \
	  --note "Wall time: pretrain $$((t1 - t0)) s, sweep $$((t2 - t1)) s (make reproduce-table2 SEEDS=$(SEEDS))."; \
	report=$$?; echo "== report: $$(( $$(date +%s) - t3 )) s; total $$(( $$(date +%s) - t0 )) s"; \
	exit $$(( sweep || report || tta ))

eval-tta: $(STAMP)  ## ms+flip mean IU of a finished sweep, no retraining: make eval-tta SWEEP_DIR=results/runs/... [INFER=msflip]
	$(VENV)/bin/fcnlab-eval sweep=$(SWEEP_DIR) infer=$(INFER)

report: $(STAMP)  ## rebuild results/table2.* from a finished sweep: make report SWEEP_DIR=results/runs/...
	$(VENV)/bin/fcnlab-report $(SWEEP_DIR) --out results

bench: $(PEERS)  ## FCN-32s/16s/8s vs torchfcn and this CPU's peak -> results/bench.json (BENCH_ARGS=--quick)
	$(VENV)/bin/fcnlab-bench $(BENCH_ARGS)

verify-voc: $(STAMP)  ## the release's nets on your seg11valid vs their published scores: make verify-voc VOC=/data/voc [WEIGHTS=dir]
	@test -n "$(VOC)" || { echo "error: VOC= is empty; make verify-voc VOC=/path/holding/VOCdevkit_and_benchmark_RELEASE"; exit 2; }
	$(VENV)/bin/fcnlab-verify --voc "$(VOC)" $(if $(WEIGHTS),--weights "$(WEIGHTS)") $(VERIFY_ARGS)

gpu-check: $(STAMP)  ## on a CUDA machine: VOC presets' images/s, ms/iteration, memory, bf16 vs fp32, eval time
	$(VENV)/bin/fcnlab-gpu-check

clean:  ## remove generated data, runs and results (keeps .venv)
	rm -rf data outputs multirun results/runs lightning_logs wandb .pytest_cache
