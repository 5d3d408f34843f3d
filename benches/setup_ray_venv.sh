#!/usr/bin/env bash
# Create .venv-ray: a separate virtual environment with Ray 2.60.0, used by
# benches/bench_compare.py to run the same workloads against Ray.
#
#   benches/setup_ray_venv.sh            # idempotent: does nothing once done
#   RAY_VENV=/elsewhere PYTHON=python3.11 benches/setup_ray_venv.sh
#
# Ray is large (a few hundred MB installed): it is installed once, and a
# stamp file records what was installed, so later runs return at once. The
# stamp names the requirements; changing them (RAY_VERSION) reinstalls.
set -euo pipefail

cd "$(dirname "$0")/.."
RAY_VENV=${RAY_VENV:-.venv-ray}
PYTHON=${PYTHON:-python3.11}
RAY_VERSION=${RAY_VERSION:-2.60.0}
REQUIREMENTS="ray==${RAY_VERSION} numpy psutil pyarrow"
STAMP="$RAY_VENV/.installed"

if [[ -f $STAMP && "$(cat "$STAMP")" == "$REQUIREMENTS" && -x $RAY_VENV/bin/python ]]; then
    exit 0
fi
if ! command -v "$PYTHON" >/dev/null 2>&1; then
    echo "setup_ray_venv: '$PYTHON' not found (Ray ${RAY_VERSION} needs Python 3.9-3.13; set PYTHON=...)" >&2
    exit 1
fi
if [[ ! -x $RAY_VENV/bin/python ]]; then
    echo "setup_ray_venv: creating $RAY_VENV with $PYTHON"
    "$PYTHON" -m venv "$RAY_VENV"
fi
echo "setup_ray_venv: installing $REQUIREMENTS into $RAY_VENV (large: once only)"
# shellcheck disable=SC2086 # REQUIREMENTS is a list of words
"$RAY_VENV/bin/python" -m pip install -q --disable-pip-version-check --root-user-action=ignore $REQUIREMENTS
"$RAY_VENV/bin/python" -c "import ray, numpy, psutil, pyarrow; print('setup_ray_venv: ray', ray.__version__)"
echo "$REQUIREMENTS" >"$STAMP"
