# Fresh machine: `make demo` or `make test` create .venv, install rsseg with its dev extras
# (torch and torchvision from the package registry), then run.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# Ignore any machine-local wheel folder: torch must come from the registry with torchvision.
PIP    := PIP_FIND_LINKS= $(BIN)/python -m pip
export HF_HUB_OFFLINE := 1

.PHONY: demo test venv clean bench-precision bench-models bench-ebb bench-retrieval bench-infer bench-ceiling bench-plain bench-vectorize gpu-check bench-scenes

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/rsseg demo --out demo-output

# The suite in the machine's precision (RSSEG_PRECISION=32|bf16 forces `auto` for all of it),
# then the `bf16` subset forced to bf16, so that both paths run on any CPU (README, Precision).
test: $(STAMP)
	$(BIN)/python -m pytest -q
	RSSEG_PRECISION=bf16 $(BIN)/python -m pytest -q -m bf16

bench-precision: $(STAMP)
	$(BIN)/python benchmarks/precision.py

bench-models: $(STAMP)
	$(BIN)/python benchmarks/models.py $(ARGS)

bench-ebb: $(STAMP)
	$(BIN)/python benchmarks/ebb.py $(ARGS)

bench-retrieval: $(STAMP)
	$(BIN)/python benchmarks/retrieval.py $(ARGS)

bench-infer: $(STAMP)
	$(BIN)/python benchmarks/infer.py --scaling $(ARGS)

# after bench-infer (its checkpoint); ARGS="--seed-seconds S" with (a)'s wall time adds the largest a/c
bench-ceiling: $(STAMP)
	$(BIN)/python benchmarks/ceiling.py --checkpoint demo-output/bench-infer/runs/bench/checkpoints/best.ckpt $(ARGS)

clean:
	rm -rf demo-output runs .pytest_cache

bench-plain: $(STAMP)
	$(BIN)/python benchmarks/plain_baseline.py $(ARGS)

bench-vectorize: $(STAMP)
	$(BIN)/python benchmarks/vectorize.py $(ARGS)

gpu-check: $(STAMP)
	$(BIN)/python benchmarks/gpu_check.py $(ARGS)

bench-scenes: $(STAMP)
	$(BIN)/python benchmarks/scenes.py $(ARGS)
