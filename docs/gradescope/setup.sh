#!/usr/bin/env bash
# Gradescope runs this once, when it builds the autograder's image: install twingrad.
#
# The only network use is pip's. twingrad comes from, in this order: a wheel
# placed next to this script in the autograder zip (`pip wheel --no-deps . -w
# dist` in a clone of twingrad, then copy dist/twingrad-*.whl here), a source
# tree in a `twingrad/` folder next to it, or the package index.
set -euo pipefail

ROOT="${AUTOGRADER_ROOT:-/autograder}"
SOURCE="$ROOT/source"
VENV="$ROOT/twingrad-venv"

if ! command -v python3 >/dev/null || ! python3 -c "import venv, ensurepip" 2>/dev/null; then
    apt-get update
    apt-get install -y python3 python3-venv python3-pip
fi
python3 -m venv "$VENV"
"$VENV/bin/pip" install --upgrade pip

shopt -s nullglob
wheels=("$SOURCE"/twingrad-*.whl)
if ((${#wheels[@]})); then
    "$VENV/bin/pip" install "${wheels[-1]}"
elif [ -f "$SOURCE/twingrad/pyproject.toml" ]; then
    "$VENV/bin/pip" install "$SOURCE/twingrad"
else
    "$VENV/bin/pip" install twingrad
fi
"$VENV/bin/python" -m twingrad verify --only affine_backward -k 1 >/dev/null  # the install works
