#!/usr/bin/env bash
# Fetch, on this machine, the wheels the lent GPU machine lacks for benchmarks/gpu_proof.py, into .whl/ (git-ignored;
# name it in the device call's `carry`). The device image has torch, timm, opencv, pillow, scipy, tqdm, pytest
# (see /work/.library/device/KINDS.md) but not mmengine (configs, registry) or albumentations (training
# augmentation) and their small dependencies. Versions: those of the project's CPU environment; Python 3.12, x86-64.
#   bash benchmarks/gpu_proof_wheels.sh          # ~5 MB; then see docs/benchmarks.md "GPU proof"
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
mkdir -p .whl
WHEELS=(
  mmengine==0.10.7 addict==2.4.0 termcolor==3.3.0 yapf==0.43.0 platformdirs==4.14.9
  albumentations==2.0.8 albucore==0.0.24 simsimd==6.5.16 stringzilla==5.3.2
  pydantic==2.14.4 pydantic_core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5
)
PLATFORMS=()
for n in 17 24 27 28 31 34 35; do PLATFORMS+=(--platform "manylinux_2_${n}_x86_64"); done
PLATFORMS+=(--platform manylinux2014_x86_64 --platform manylinux1_x86_64)
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  "${PLATFORMS[@]}" -d .whl "${WHEELS[@]}"
ls -1 .whl
du -sh .whl
