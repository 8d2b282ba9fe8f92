# Two commands do everything on a fresh clone:  `make train`  and  `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Parallel workers for `make train` / `make test` (this machine has 2 cores).
JOBS   ?= 2

.PHONY: venv train repeats test bench docs clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[all]'
	touch $(STAMP)

# `make train` fails a job that regressed against the committed training-baseline.json, once that file
# exists (tolerances: pytest.ini); `make train TRAIN_ARGS=--save-baseline=training-baseline.json` records it.
train: venv
	$(BIN)/python -m pytest -p training_plugin -n $(JOBS) $(if $(wildcard training-baseline.json),--compare=training-baseline.json) --html=training-results/report.html --self-contained-html $(TRAIN_ARGS)

# `make repeats`: 5 seeds of the fast jobs (20 cells, 12-90 s each: 4 min 36 s to 7 min 22 s wall
# with -n 2 on this shared 2-core machine), each configuration compared
# with the committed multi-seed baseline training-baseline-repeats.json once it exists: a mean
# fails only when it dropped beyond the tolerance and a one-sided Welch t-test says p < 0.05
# (docs/sweeps.md); `make repeats TRAIN_ARGS=--save-baseline=training-baseline-repeats.json`
# records it.
REPEAT_JOBS ?= (alzheimers_structured and not ensemble) or brain_mri or (model and not baseline) or als
repeats: venv
	$(BIN)/python -m pytest -p training_plugin -n $(JOBS) --repeats 5 -k "$(REPEAT_JOBS)" $(if $(wildcard training-baseline-repeats.json),--compare=training-baseline-repeats.json) --html=training-results/repeats.html --self-contained-html $(TRAIN_ARGS)

test: venv
	$(BIN)/python -m pytest -n $(JOBS) $(TEST_ARGS)

bench: venv
	for b in bench/bench_*.py; do $(BIN)/python $$b || exit 1; done

# `make docs` builds the user guide and the generated configuration reference into site/ (git-ignored).
docs: venv
	NO_MKDOCS_2_WARNING=1 $(BIN)/python -m mkdocs build --strict

clean:
	rm -rf $(VENV) training-results .pytest_cache site
