# fcnlab: every target bootstraps .venv (pinned installs) itself, so a new machine needs only `make <target>`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
SEEDS  ?= 1
# Empty: the folder for this code and SEEDS (fcnlab-report --pick-sweep), so running the same command
# again resumes it; FRESH=1 starts a new one. A given SWEEP_DIR is used as it is.
SWEEP_DIR ?=
FRESH  ?=
RUNS_DIR ?= results/runs
PICK_SWEEP = $(if $(SWEEP_DIR),echo "$(SWEEP_DIR)",$(VENV)/bin/fcnlab-report --pick-sweep --seeds $(SEEDS) --runs-dir "$(RUNS_DIR)" $(1))
TTA    ?= 0
# Table 1's backbones pretrained one after another on all cores, as reproduce-table2's is: the thread
# count changes a pretrained net's last bits, and vgg16_tiny's file is shared by both tables.
TABLE1_PRETRAIN := hydra.launcher.n_jobs=1 torch_threads=null
INFER  ?= msflip
SEED_LIST := $(shell seq -s, 0 $$(( $(SEEDS) - 1 )))
# torchfcn 1.9.7, the peer implementation: make test compares fcnlab with it on the same weights
# (never skipped under CI=true), make bench times both. --no-deps: its own pins are for old torch.
PEERS  := $(VENV)/.peers-torchfcn-1.9.7
VOC    ?=
WEIGHTS ?=
PROFILE_MODEL ?= fcn32s

.PHONY: help install peers test test-fast lint reproduce-table2 reproduce-table1 table1-lr-search eval-tta report bench table2-profile verify-voc gpu-check clean

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

reproduce-table2: $(STAMP)  ## Table 2 on the embedded default (SEEDS=3 for mean ± std, TTA=1 adds ms+flip; run again to resume, FRESH=1 to start over)
	@set -u; t0=$$(date +%s); \
	dir=$$($(call PICK_SWEEP,$(if $(filter-out 0 no false,$(FRESH)),--fresh))) || exit $$?; \
	echo "== sweep folder: $$dir (the same command again resumes it; FRESH=1 starts a new one)"; \
	$(VENV)/bin/fcnlab-train --config-name table2 pretrain_only=true task_name=pretrain init_from=null || exit $$?; \
	t1=$$(date +%s); echo "== pretrain (data + backbone): $$((t1 - t0)) s"; \
	$(VENV)/bin/fcnlab-train -m --config-name table2 "seed=$(SEED_LIST)" "hydra.sweep.dir=$$dir"; sweep=$$?; \
	t2=$$(date +%s); echo "== sweep (all rows): $$((t2 - t1)) s"; tta=0; \
	if [ "$(TTA)" = 1 ]; then $(VENV)/bin/fcnlab-eval "sweep=$$dir" infer=$(INFER); tta=$$?; \
	  echo "== eval $(INFER) (no retraining): $$(( $$(date +%s) - t2 )) s"; fi; t3=$$(date +%s); \
	$(VENV)/bin/fcnlab-report "$$dir" --out results \
	  --note "Wall time of this make run: pretrain $$((t1 - t0)) s, sweep $$((t2 - t1)) s (make reproduce-table2 SEEDS=$(SEEDS); rows finished by an earlier run are skipped, not counted)."; \
	report=$$?; echo "== report: $$(( $$(date +%s) - t3 )) s; total $$(( $$(date +%s) - t0 )) s"; \
	exit $$(( sweep || report || tta ))

reproduce-table1: $(STAMP)  ## Table 1 on the embedded default: FCN-32s on each tiny backbone -> results/table1.md (SEEDS=3; run again to resume, FRESH=1 to start over)
	@set -u; t0=$$(date +%s); \
	dir=$$($(call PICK_SWEEP,--table table1 $(if $(filter-out 0 no false,$(FRESH)),--fresh))) || exit $$?; \
	echo "== sweep folder: $$dir (the same command again resumes it; FRESH=1 starts a new one)"; \
	$(VENV)/bin/fcnlab-train -m --config-name table1 pretrain_only=true $(TABLE1_PRETRAIN) "hydra.sweep.dir=$$dir/.pretrain" || exit $$?; \
	t1=$$(date +%s); echo "== pretrain (data + three backbones): $$((t1 - t0)) s"; \
	$(VENV)/bin/fcnlab-train -m --config-name table1 "seed=$(SEED_LIST)" "hydra.sweep.dir=$$dir"; sweep=$$?; \
	t2=$$(date +%s); echo "== sweep (all rows): $$((t2 - t1)) s"; \
	test -s "$$dir/table1_nets.json" || $(VENV)/bin/fcnlab-models --table1 "$$dir/table1_nets.json" --repeats 5 || exit $$?; \
	t3=$$(date +%s); echo "== full-size nets (conv layers, parameters, rf, forward ms at 500x500): $$((t3 - t2)) s"; \
	$(VENV)/bin/fcnlab-report "$$dir" --table1 "$$dir/table1_nets.json" --out results \
	  --note "Wall time of this make run: pretrain $$((t1 - t0)) s, sweep $$((t2 - t1)) s, nets $$((t3 - t2)) s (make reproduce-table1 SEEDS=$(SEEDS); steps finished by an earlier run are skipped, not counted)."; \
	report=$$?; echo "== report: $$(( $$(date +%s) - t3 )) s; total $$(( $$(date +%s) - t0 )) s"; \
	exit $$(( sweep || report ))

table1-lr-search: $(STAMP)  ## Table 1's line search: each tiny backbone's FCN-32s at 4 learning rates -> results/table1_lr_search.md
	@set -u; dir=$$($(call PICK_SWEEP,--table table1_lr_search $(if $(filter-out 0 no false,$(FRESH)),--fresh))) || exit $$?; \
	echo "== sweep folder: $$dir (the same command again resumes it; FRESH=1 starts a new one)"; \
	$(VENV)/bin/fcnlab-train -m --config-name table1 pretrain_only=true $(TABLE1_PRETRAIN) "hydra.sweep.dir=$$dir/.pretrain" || exit $$?; \
	$(VENV)/bin/fcnlab-train -m --config-name table1_lr_search "hydra.sweep.dir=$$dir"; sweep=$$?; \
	$(VENV)/bin/fcnlab-report "$$dir" --lr-search --out results; report=$$?; exit $$(( sweep || report ))

eval-tta: $(STAMP)  ## ms+flip mean IU of the current sweep (or SWEEP_DIR=...), no retraining [INFER=msflip]
	@dir=$$($(call PICK_SWEEP,)) || exit $$?; $(VENV)/bin/fcnlab-eval "sweep=$$dir" infer=$(INFER)

report: $(STAMP)  ## rebuild results/table2.* from the current sweep (or SWEEP_DIR=results/runs/...)
	@dir=$$($(call PICK_SWEEP,)) || exit $$?; $(VENV)/bin/fcnlab-report "$$dir" --out results

bench: $(PEERS)  ## FCN-32s/16s/8s beside torchfcn, against this machine's peak -> results/bench.json (BENCH_ARGS=--quick)
	$(VENV)/bin/fcnlab-bench $(BENCH_ARGS)

table2-profile: $(STAMP)  ## one Table 2 row under Lightning's profiler (debug=profile) -> its folder's fit-profile.txt (PROFILE_MODEL=fcn8s)
	@dir=$$($(call PICK_SWEEP,)) || exit $$?; run=outputs/profile/$(PROFILE_MODEL)_$$(date +%Y-%m-%d_%H-%M-%S); \
	$(VENV)/bin/fcnlab-train --config-name table2 model=$(PROFILE_MODEL) debug=profile \
	  "hydra.sweep.dir=$$dir" "hydra.run.dir=$$run" $(PROFILE_ARGS) || exit $$?; \
	head -n 16 "$$run/fit-profile.txt"; echo "== the whole table: $$run/fit-profile.txt"

verify-voc: $(STAMP)  ## the release's nets on your seg11valid vs their published scores: make verify-voc VOC=/data/voc [WEIGHTS=dir]
	@test -n "$(VOC)" || { echo "error: VOC= is empty; make verify-voc VOC=/path/holding/VOCdevkit_and_benchmark_RELEASE"; exit 2; }
	$(VENV)/bin/fcnlab-verify --voc "$(VOC)" $(if $(WEIGHTS),--weights "$(WEIGHTS)") $(VERIFY_ARGS)

gpu-check: $(STAMP)  ## on a CUDA machine: VOC presets' speed (busy vs data wait), memory, bf16/TF32 vs true fp32, every model, DDP, eval time
	$(VENV)/bin/fcnlab-gpu-check

clean:  ## remove generated data, runs and results (keeps .venv)
	rm -rf data outputs multirun results/runs lightning_logs wandb .pytest_cache
