#!/usr/bin/env bash
# One GPU session in a single command: the CUDA tests, the framework's CUDA speed, the service on
# CUDA (denoise + a short training job), then GPU training of a larger U-Net, evaluated on CBSD68.
#
#   bash benchmarks/gpu_session.sh prepare     # here, with the package index reachable:
#                                              #   .whl/ (the service's wheels for Python 3.12) and
#                                              #   .gpudata/ (CBSD432 and CBSD68 from ../shared/data)
#   bash benchmarks/gpu_session.sh run         # there (carry .whl and .gpudata); results go to $OUT
#
# The GPU machine has torch and most of the stack but no FastAPI: the wheels travel with the tree.
# TRAIN_SECONDS (default 240) bounds the training; a run cut short is exported from its checkpoint.
set -uo pipefail
cd "$(dirname "$0")/.."

prepare() {
    rm -rf .whl && mkdir -p .whl .gpudata
    python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
        fastapi==0.165.0 starlette==1.10.0 uvicorn==0.54.0 pydantic==2.14.4 pydantic_core==2.50.5 \
        pydantic-settings==2.16.3 python-dotenv==1.2.4 python-multipart==0.0.34 typing-inspection==0.4.5 \
        annotated-types==0.8.0 typing_extensions==4.16.0 opentelemetry-api==1.45.2
    # anyio, idna, click, h11, httpx, httpcore, certifi, annotated-doc, zipp and hypothesis are there already
    cp -r ../shared/data/CBSD432 ../shared/data/CBSD68 .gpudata/
    du -sh .whl .gpudata
}

run() {
    : "${OUT:?run this on the device machine, where OUT is set}"
    export PYTHONUNBUFFERED=1
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || exit 1
    export PYTHONPATH=/tmp/site:$PWD
    nvidia-smi -L | tee "$OUT/gpu.txt"
    python3 -m pytest -q -p no:cacheprovider tests/core/test_cuda.py 2>&1 | tail -5 | tee "$OUT/cuda_tests.txt"
    python3 benchmarks/core_speed.py --device cuda --repeats 30 2>&1 | tail -15 | tee "$OUT/core_speed_cuda.txt"
    python3 benchmarks/service_check.py --device cuda --steps 300 2>&1 | grep -v "^  job" | tee "$OUT/service.txt"
    cp benchmarks/results/service_cuda.json "$OUT/" 2>/dev/null
    local w="$OUT/unet_gpu.safetensors"
    timeout "${TRAIN_SECONDS:-240}" python3 -m n2n_core.cli train --data .gpudata/CBSD432 --arch unet --steps 20000 \
        --batch-size 32 --patch-size 64 --lr 1e-3 --device cuda --val-every 1000 --checkpoint-every 1000 \
        --out "$w" 2>&1 | tail -30 | tee "$OUT/train.txt"
    [ -f "$w" ] || python3 benchmarks/export_checkpoint.py "${w%.safetensors}.ckpt.safetensors" "$w" 2>&1 | tail -3
    rm -f "${w%.safetensors}.ckpt.safetensors"
    python3 benchmarks/evaluate.py --weights "$w" --data .gpudata/CBSD68 --no-card 2>&1 | tail -3 | tee "$OUT/eval.txt"
    cp benchmarks/results/eval_unet_gpu_*.json "$OUT/" 2>/dev/null
    ls -la "$OUT"
}

case "${1:-}" in
    prepare) prepare ;;
    run) run ;;
    *) echo "usage: $0 prepare|run" >&2; exit 2 ;;
esac
