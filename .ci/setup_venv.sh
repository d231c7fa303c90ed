#!/usr/bin/env bash
# Creates (or reuses) the project's virtual environment and prints its path on the last line.
# The venv lives outside the checkout (SBDINO_VENV, default ~/.cache/sbdino/venv-<hash>) and is
# rebuilt whenever setup.py or this script changes. Everything comes from the package registries.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
stamp_src="$(cat "$repo/setup.py" "$repo/.ci/setup_venv.sh" | sha256sum | cut -c1-12)"
venv="${SBDINO_VENV:-$HOME/.cache/sbdino/venv-$stamp_src}"
python="${PYTHON:-python3.11}"
command -v "$python" >/dev/null 2>&1 || python=python3

if [ ! -f "$venv/.sbdino-ready" ] || ! "$venv/bin/python" -c "import speechbrain_dino" >/dev/null 2>&1; then
    echo "[setup] creating $venv" >&2
    rm -rf "$venv"
    "$python" -m venv "$venv"
    "$venv/bin/pip" install -q --upgrade pip >&2
    # The torch/torchaudio pair known to import together here (torchaudio 2.11 against torch 2.14.1).
    "$venv/bin/pip" install -q "torch==2.14.1" "torchaudio==2.11.0" 2>&1 | grep -v "^WARNING: Location" >&2 || true
    "$venv/bin/pip" install -q -e "$repo[test,faiss,plots,onnx]" 2>&1 | grep -v "^WARNING: Location" >&2 || true
    "$venv/bin/python" -c "import torch, torchaudio, speechbrain, speechbrain_dino" >&2
    touch "$venv/.sbdino-ready"
else
    # The venv is reused; make sure it points at this checkout (CI clones to a new folder).
    "$venv/bin/pip" install -q --no-deps -e "$repo" 2>&1 | grep -v "^WARNING: Location" >&2 || true
fi
echo "$venv"
