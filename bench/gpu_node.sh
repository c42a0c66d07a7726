#!/usr/bin/env bash
# Measure flameqa on one GPU node (CUDA device + many CPU cores) in one go; JSON lines to $OUT.
#
#   OUT=/tmp/gpu bash bench/gpu_node.sh VIDEO [COPIES]
#
# VIDEO: a 720p25 talking-head video (python bench/pipeline.py --synth talk720.mp4 makes one);
# COPIES: back-to-back copies for the one- and two-process faces runs (default 4; all cores get
# COPIES*cores/4+1), and the pipeline runs cores inputs of two copies each.
# Optional, for a node that cannot install packages (bench/gpu_bundle.sh packs them): .dev/site.tar.xz (extracted site-packages,
# put first on PYTHONPATH) and .dev/models (the model cache, used as $FLAMEQA_MODEL_DIR).
# Steps: CUDA tests; fit on CUDA vs the CPU with every core (same run); faces at 1, 2 and all
# cores (executor workers; INNER=1: also all cores on one shard, --pool inner); the video path of the
# production pipeline (ingest, faces, fit; speech needs its model).
set -u
VIDEO=${1:?video}; COPIES=${2:-4}; OUT=${OUT:-/tmp/flameqa-gpu}; mkdir -p "$OUT"
PY=${PYTHON:-python3}
if [ -f .dev/site.tar.xz ] && ! $PY -c "import mediapipe, av, pydantic" 2>/dev/null; then
  mkdir -p /tmp/site && tar xJf .dev/site.tar.xz -C /tmp/site && export PYTHONPATH=/tmp/site:$PWD/.dev/extra:$PWD
else
  export PYTHONPATH=$PWD/.dev/extra:$PWD
fi
[ -d .dev/models ] && export FLAMEQA_MODEL_DIR=$PWD/.dev/models
# MediaPipe's library links libEGL/libGLESv2 even on the CPU: .dev/gl/*.deb (libegl1 libglvnd0 libgles2)
if [ -d .dev/gl ] && ! ldconfig -p | grep -q 'libEGL.so.1 '; then for f in .dev/gl/*.deb; do dpkg -x "$f" /; done; ldconfig; fi
export PYTHONUNBUFFERED=1
N=$(nproc)
step() { echo "== $1 $(date +%T)"; }
step env
nvidia-smi -L; echo "cores=$N"; $PY -c "import torch, numpy; print('torch', torch.__version__, torch.cuda.get_device_name(0), 'numpy', numpy.__version__)"
$PY -c "import mediapipe, av, pydantic; print('mediapipe', mediapipe.__version__, 'av', av.__version__)"
step cuda-tests
timeout 300 $PY -m pytest -q -p no:cacheprovider tests/fit/test_cuda.py tests/flame/test_lbs.py -k cuda 2>&1 | tail -5
step fit-cuda
timeout 300 $PY bench/fit.py --device cuda --frames 100000 --presets tracking dataset --profile 20000 \
  2> "$OUT/fit_profile.txt" | tee "$OUT/fit_cuda.jsonl"
grep -A 14 "Self CUDA" "$OUT/fit_profile.txt" | head -16
step video
LONG=/tmp/bench_long.mp4; LONGER=/tmp/bench_longer.mp4; PIPE=/tmp/bench_pipe.mp4
cat_video() { $PY -c "import sys; from flameqa.bench.pipeline import concat_copies; concat_copies(sys.argv[1], sys.argv[2], int(sys.argv[3]))" "$@"; }
cat_video "$VIDEO" "$LONG" "$COPIES"; cat_video "$VIDEO" "$LONGER" $((COPIES * N / 4 + 1)); cat_video "$VIDEO" "$PIPE" 2
# one worker and two on LONG; every core on LONGER, so each process still gets minutes of video
for w in 1 2 "$N"; do
  step "faces-$w"; v=$LONG; [ "$w" -gt 2 ] && v=$LONGER
  timeout 400 $PY -m flameqa bench faces --video "$v" --workers "$w" --frames 750 --json | tee -a "$OUT/faces.jsonl"
done
# INNER=1: also every core on ONE video, as a pipeline runs it (the stage's own processes over one
# shard, long clips in pieces); off by default: it adds ~1-2 min to a call limited to 10
if [ "${INNER:-0}" = 1 ]; then
  step "faces-inner-$N"
  timeout 300 $PY -m flameqa bench faces --video "$LONGER" --workers "$N" --pool inner --frames 750 --json | tee -a "$OUT/faces.jsonl"
fi
step pipeline-video-path
# N inputs, one per shard: every landmark process has a video of its own
timeout 500 $PY -m flameqa bench pipeline --config pipelines/flameqa.yaml --video "$PIPE" --videos "$N" \
  --set 'stages=[ingest,faces,fit]' --set runner.stage_workers.faces="$N" --set ingest.videos_per_shard=1 \
  --limit all --json | tee "$OUT/pipeline.json"
# baselines in the same run: an earlier fitter (.dev/old/flameqa, when carried), the CPU with every core
if [ -d .dev/old/flameqa ]; then
  step fit-cuda-old
  PYTHONPATH=$PWD/.dev/old:$PYTHONPATH timeout 200 $PY bench/fit.py --device cuda --frames 100000 --presets tracking | tee "$OUT/fit_cuda_old.jsonl"
fi
step fit-cpu-baseline
timeout 200 $PY bench/fit.py --device cpu --frames 20000 --presets tracking --workers "$N" | tee "$OUT/fit_cpu.jsonl"
step done
