# Two commands for a new user: `make demo` and `make test`. Both create .venv first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
GM     := $(VENV)/bin/genmodels
DEMO   ?= demo-output
# torch first and pinned: on a machine without a GPU pip takes the local CPU wheel instead of
# pulling several GB of CUDA packages through an unpinned dependency.
TORCH  ?= torch==2.13.0

.PHONY: demo test install install-test clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(PY) -m pip install -q -e ".[test]"
	touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

demo: $(VENV)/.installed
	@mkdir -p $(DEMO)
	$(GM) fit wine --model flow --out $(DEMO)/model --max-time 60 --seed 0
	$(GM) sample $(DEMO)/model -n 500 -o $(DEMO)/synthetic.csv --seed 0
	$(GM) score $(DEMO)/model wine -o $(DEMO)/scores.csv
	$(GM) evaluate $(DEMO)/model wine --json > $(DEMO)/evaluation.json
	$(GM) fit digits --model pixelcnn --out $(DEMO)/digits-model --max-time 45 --seed 0 --threads 1 --quiet
	$(GM) sample $(DEMO)/digits-model -n 64 -o $(DEMO)/digits-sevens.png --condition label=7 --seed 0
	$(GM) score $(DEMO)/digits-model digits -o $(DEMO)/digits-scores.csv
	$(GM) fit shakespeare --model ngram --out $(DEMO)/shakespeare-model --set order=6 --quiet
	$(GM) sample $(DEMO)/shakespeare-model -n 2 --prompt "ROMEO:" --set max_length=200 --seed 0 -o $(DEMO)/shakespeare-samples.txt
	$(GM) score $(DEMO)/shakespeare-model shakespeare -o $(DEMO)/shakespeare-scores.csv
	@echo "demo: model, synthetic rows, scores and evaluation are in $(DEMO)/; 64 sampled 8x8 sevens in $(DEMO)/digits-sevens.png;"
	@echo "      Shakespeare from a 6-gram model in $(DEMO)/shakespeare-samples.txt"
	@cat $(DEMO)/shakespeare-samples.txt
	@cat $(DEMO)/evaluation.json

test: $(VENV)/.installed-test
	$(PY) -m pytest -n 2 --durations=15

clean:
	rm -rf $(VENV) $(DEMO) .pytest_cache

# genmodels vs SDV (tabular synthesis). SDV is BUSL-licensed and needs pandas<3, so it lives in its
# own venv (.venv-bench, git-ignored) and is never a dependency of genmodels; genmodels runs there
# under pandas 2.x. Budgets: BENCH_SDV_ARGS (default: adult 180 s, penguins/iris 45 s, plus B/2).
BENCH_VENV     := .venv-bench
BENCH_SDV_ARGS ?= --datasets adult,penguins,iris --budget-adult 180 --budget-small 45 --half --out benchmarks/results/sdv

$(BENCH_VENV)/.installed: pyproject.toml benchmarks/requirements-sdv.txt benchmarks/requirements-anomaly.txt benchmarks/requirements-images.txt
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install -q --upgrade pip
	$(BENCH_VENV)/bin/python -m pip install -q "$(TORCH)"
	$(BENCH_VENV)/bin/python -m pip install -q -r benchmarks/requirements-sdv.txt
	$(BENCH_VENV)/bin/python -m pip install -q -r benchmarks/requirements-anomaly.txt
	$(BENCH_VENV)/bin/python -m pip install -q -r benchmarks/requirements-images.txt
	$(BENCH_VENV)/bin/python -m pip install -q -e .
	touch $@

.PHONY: bench-sdv
bench-sdv: $(BENCH_VENV)/.installed
	$(BENCH_VENV)/bin/python benchmarks/sdv_tabular.py $(BENCH_SDV_ARGS)

# Issue 4's benchmarks: anomaly detection against PyOD (in .venv-bench), imputation against
# scikit-learn's imputers and the OOD / augmentation study (in the project venv).
.PHONY: bench-anomaly bench-impute bench-ood bench-images
bench-anomaly: $(BENCH_VENV)/.installed
	$(BENCH_VENV)/bin/python benchmarks/anomaly.py --mnist
bench-impute: $(VENV)/.installed
	$(VENV)/bin/python benchmarks/impute.py --seeds 5 --max-rows 2000
bench-ood: $(VENV)/.installed
	$(VENV)/bin/python benchmarks/ood_augment.py
# five families x 15 minutes, two at a time, then pythae's VAE (needs pythae in .venv-bench)
bench-images: $(VENV)/.installed $(BENCH_VENV)/.installed
	$(VENV)/bin/python benchmarks/images.py --budget 900 --jobs 2 --pythae

# Issue 6's text benchmark: genmodels' gpt against a plain PyTorch loop of nanoGPT's CPU recipe (same
# process, same torch threads), then ngram / rnn / gpt for 10 minutes each on shakespeare (~40 min).
.PHONY: bench-text
bench-text: $(VENV)/.installed
	$(VENV)/bin/python benchmarks/text.py --budget 600 --threads 1
# MOSES: a 30-minute LSTM per representation (SMILES, SELFIES), 10,000 samples, the MOSES metrics
bench-molecules: $(VENV)/.installed
	$(VENV)/bin/python benchmarks/molecules.py --budget 1800 --size 300000 --family rnn --jobs 1 \
		--threads 2 --temperatures 1.0,0.9 --canonical-only --out benchmarks/results/molecules
