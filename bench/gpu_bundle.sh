#!/usr/bin/env bash
# Pack what bench/gpu_node.sh needs on a GPU node that cannot reach a registry, into .dev/
# (git-ignored through .git/info/exclude; keep it under the 64 MiB a device call may carry):
#   .dev/site.tar.xz   mediapipe, PyAV, pydantic(+core) wheels for the node's Python, extracted,
#                      mediapipe's debug symbols stripped (128 → 98 MB; xz: 53 MB)
#   .dev/extra/        annotated_types (pure Python, pydantic's need)
#   .dev/gl/*.deb      libegl1 libglvnd0 libgles2: MediaPipe links libEGL/libGLESv2 even on the CPU
#   .dev/models/       the FaceLandmarker bundle (the demo head is generated from it there)
#   .dev/old/flameqa   the fitter at BASE (default HEAD), the same-run baseline of fit-cuda-old
#   .dev/VIDEO         the first 30 s of VIDEO (a 720p25 talk; bench/pipeline.py --synth makes one)
#
#   bash bench/gpu_bundle.sh /tmp/talk720.mp4 [PYVER=3.12] [BASE=HEAD]
# then, on the node: bash bench/gpu_node.sh .dev/talk720_30.mp4   (carry: .dev)
set -euo pipefail
VIDEO=${1:?video}; PYVER=${2:-3.12}; BASE=${3:-HEAD}
PY=${PY:-.venv/bin/python}
grep -qx '/.dev/' .git/info/exclude || echo '/.dev/' >> .git/info/exclude
rm -rf .dev && mkdir -p .dev/extra .dev/gl .dev/models .dev/old
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT
ver() { "$PY" -m pip show "$1" 2>/dev/null | awk '/^Version/{print $2}'; }
plat=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
for p in mediapipe av pydantic pydantic_core typing_inspection annotated_types; do
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "$PYVER" --implementation cp "${plat[@]}" \
    -d "$W/whl" "$p==$(ver "$p")"
done
mkdir -p "$W/site"
for w in "$W"/whl/*.whl; do
  case $w in *annotated_types*) (cd .dev/extra && unzip -q -o "$w") ;; *) (cd "$W/site" && unzip -q -o "$w") ;; esac
done
rm -rf "$W/site/mediapipe/tasks/python/test" "$W"/site/mediapipe-*.dist-info/licenses/NOTICE
strip --strip-unneeded "$W/site/mediapipe/tasks/c/libmediapipe.so"
tar cf - -C "$W/site" . | xz -9 -T0 > .dev/site.tar.xz
o=(-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists="$W/lists")
mkdir -p "$W/lists/partial" && apt-get "${o[@]}" update -qq && (cd .dev/gl && apt-get "${o[@]}" download libegl1 libglvnd0 libgles2)
cp -r "$("$PY" -c 'from flameqa.models import model_dir; print(model_dir())')/face_landmarker" .dev/models/
git archive "$BASE" flameqa | tar -x -C .dev/old
ffmpeg -v error -y -i "$VIDEO" -t 30 -c copy ".dev/$(basename "${VIDEO%.*}")_30.mp4"
du -sh .dev; echo "working tree + .dev must stay under 64 MiB: $(du -sb .dev | cut -f1) bytes in .dev"
