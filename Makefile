# Set-up and the two Quick-start commands. Torch is installed first and pinned: the local CPU
# wheel satisfies it, where a looser requirement would pull several GB of CUDA packages.
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_DIR ?= runs/demo

.PHONY: setup demo test lint clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev,ray,dmc]"
	touch $@

setup: $(VENV)/.installed

# Train EfficientZero V2 on CartPole (a few CPU minutes), evaluate it with a video, draw its
# learning curve.
demo: setup
	rm -rf $(DEMO_DIR)
	$(VENV)/bin/frugal train efficientzero --env gym/CartPole-v1 --steps 5000 --run-dir $(DEMO_DIR) \
		run.eval_every=1000
	$(VENV)/bin/frugal eval $(DEMO_DIR) --episodes 10 --video
	$(VENV)/bin/frugal compare $(DEMO_DIR) --out $(DEMO_DIR)/report
	@echo "run: $(DEMO_DIR)  video: $(DEMO_DIR)/videos/  curve: $(DEMO_DIR)/report/  tensorboard --logdir $(DEMO_DIR)"

test: setup
	$(VENV)/bin/python -m pytest -q

lint: setup
	$(VENV)/bin/ruff check frugal tests benchmarks
	$(VENV)/bin/ruff format --check frugal tests benchmarks

clean:
	rm -rf $(VENV) runs compare
