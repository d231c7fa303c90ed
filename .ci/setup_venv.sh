#!/usr/bin/env bash
# Creates (or reuses) the project's virtual environment and prints its path on the last line.
# The venv lives outside the checkout (SBDINO_VENV, default ~/.cache/sbdino/venv-<hash>) and is
# rebuilt whenever setup.py or this script changes. Everything comes from the package registries.
# pip's own output goes to <venv>.log (shown only when a step fails).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
stamp_src="$(cat "$repo/setup.py" "$repo/.ci/setup_venv.sh" | sha256sum | cut -c1-12)"
venv="${SBDINO_VENV:-$HOME/.cache/sbdino/venv-$stamp_src}"
log="$venv.log"
python="${PYTHON:-python3.11}"
command -v "$python" >/dev/null 2>&1 || python=python3

quietly() {  # runs a setup step with its output in $log; on failure shows its end and stops
    if ! "$@" >>"$log" 2>&1; then
        echo "[setup] failed: $*; the end of $log:" >&2
        tail -n 30 "$log" >&2
        exit 1
    fi
}

installed_from() {  # the checkout the venv's speechbrain_dino is imported from (empty if none);
    # run from / so that a speechbrain_dino/ folder in the current directory is not the one imported
    env -C / "$venv/bin/python" -c "import os, speechbrain_dino; print(os.path.dirname(os.path.dirname(speechbrain_dino.__file__)))" 2>/dev/null || true
}

if [ ! -f "$venv/.sbdino-ready" ]; then
    echo "[setup] creating $venv (a few minutes; pip's output in $log)" >&2
    rm -rf "$venv"
    mkdir -p "$(dirname "$venv")"
    : >"$log"
    quietly "$python" -m venv "$venv"
    quietly "$venv/bin/pip" install --upgrade pip
    # The torch/torchaudio pair known to import together here (torchaudio 2.11 against torch 2.14.1).
    quietly "$venv/bin/pip" install "torch==2.14.1" "torchaudio==2.11.0"
    quietly "$venv/bin/pip" install -e "$repo[test,faiss,plots,onnx]"
    touch "$venv/.sbdino-ready"
fi
if [ "$(installed_from)" != "$repo" ]; then
    # The venv is reused from another checkout (CI clones to a new folder, or that checkout is
    # gone): point it at this one.
    quietly "$venv/bin/pip" install --no-deps -e "$repo"
fi
quietly env -C / "$venv/bin/python" -c "import torch, torchaudio, speechbrain, speechbrain_dino"
echo "$venv"
