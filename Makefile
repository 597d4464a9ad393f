# The two commands a fresh machine needs: `make run` and `make test`. Both set up what is missing.
PY := .venv/bin/python
HOST ?= 127.0.0.1
PORT ?= 8188

.PHONY: setup run test lint bench pack clean

setup:
	@bash scripts/setup.sh

run: setup
	$(PY) -m safety_steer.cli serve --host $(HOST) --port $(PORT)

test: setup
	$(PY) -m pytest -q $(PYTEST_ARGS)

lint: setup
	$(PY) -m ruff check . && $(PY) -m ruff format --check .

bench: setup
	$(PY) -m safety_steer.cli bench extraction
	$(PY) -m safety_steer.cli bench transport
	$(PY) -m safety_steer.cli bench overhead --rounds 31 --steps 20 --out-json bench/results/overhead.json

pack: setup
	$(PY) -m safety_steer.cli build-pack --source gemma3-270m --out vectors/gemma3-270m-i2p.safetensors
	$(PY) -m safety_steer.cli build-pack --source smollm2-135m --out vectors/smollm2-135m-i2p.safetensors

clean:
	rm -rf data/comfyui data/cache
