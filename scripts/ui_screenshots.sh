#!/usr/bin/env bash
# Regenerates the README's screenshots (docs/screenshots/*.png) and the templates' thumbnails
# (example_workflows/<name>.jpg) by running the browser tests with SAFETY_STEER_UPDATE_SCREENSHOTS=1:
# Debian's chromium (apt-get install -y chromium) driven by Playwright against a real server.
# FRONTEND=<dir holding comfyui_frontend_package> runs them against another frontend build
# (pip install --no-deps --target <dir> comfyui-frontend-package==X.Y.Z), the venv left as it is.
set -euo pipefail
cd "$(dirname "$0")/.."
export SAFETY_STEER_UPDATE_SCREENSHOTS=1
if [ -n "${FRONTEND:-}" ]; then export PYTHONPATH="$FRONTEND${PYTHONPATH:+:$PYTHONPATH}"; fi
.venv/bin/python -m pytest -q tests/test_browser_ui.py "$@"
