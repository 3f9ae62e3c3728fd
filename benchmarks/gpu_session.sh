#!/usr/bin/env bash
# One GPU session in a single command: four trainings that share the GPU for a fixed wall-clock
# budget (the next default, best, blind and fast), then the CUDA tests, the framework's CUDA speed
# against cuDNN and tiled inference on the GPU (512x512 and 24 MP).
#
#   bash benchmarks/gpu_session.sh prepare     # here: .gpudata/ (CBSD432 from ../shared/data) and the
#                                              #   starting weights under runs/gpu/ (see runs/gpu/README.md)
#   bash benchmarks/gpu_session.sh run         # there (carry .gpudata); results go to $OUT
#   bash benchmarks/gpu_session.sh prepare-singles / run-singles   # issue 24: Neighbor2Neighbor against
#                                              #   Noise2Noise on the same single-shot photos (see run_singles)
#
# Each training is benchmarks/gpu_train.py: it times a few steps of its own configuration while the
# others run, then plans a whole cosine schedule that fits TRAIN_SECONDS (default 400). The results
# come back as $OUT/train.tar.gz (weights, histories, summaries, logs); evaluate them here, on the CPU.
set -uo pipefail
cd "$(dirname "$0")/.."

prepare() {
    mkdir -p .gpudata
    grep -qx '/.gpudata/' .git/info/exclude 2>/dev/null || echo /.gpudata/ >> .git/info/exclude
    rm -rf .gpudata/CBSD432 && cp -r ../shared/data/CBSD432 .gpudata/
    ls runs/gpu/unet-m-init.safetensors runs/gpu/unet-l-init.safetensors runs/gpu/blind-m-init.safetensors || exit 1
    du -sh .gpudata runs/gpu
}

train() {  # NAME ARCH INIT LR [more gpu_train.py options, a later --data wins]; INIT "-": a fresh network
    local name=$1 arch=$2 init=$3 lr=$4 initarg=()
    shift 4
    [ "$init" != - ] && initarg=(--init "$init")
    timeout $((TRAIN_SECONDS + 60)) python3 benchmarks/gpu_train.py --name "$name" --arch "$arch" "${initarg[@]}" \
        --lr "$lr" --data .gpudata/CBSD432 --device "$DEVICE" --tf32 --threads 3 --seconds "$TRAIN_SECONDS" \
        --batch-size "$BATCH" --patch-size "$PATCH" --warmup 200 --ema 0.999 --val-every 250 --checkpoint-every 500 \
        --out-dir "$RUNS" "$@" > "$RUNS/$name.log" 2>&1
}

run() {
    : "${OUT:?run this on the device machine, where OUT is set}"
    # DEVICE=cpu BATCH=4 PATCH=32 TRAIN_SECONDS=60 OUT=/tmp/out rehearses the whole script on a CPU
    export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD TRAIN_SECONDS=${TRAIN_SECONDS:-400} RUNS=/tmp/gpu-runs
    export DEVICE=${DEVICE:-cuda} BATCH=${BATCH:-32} PATCH=${PATCH:-128}
    mkdir -p "$RUNS"
    { nvidia-smi -L; python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"; } \
        2>&1 | tee "$OUT/gpu.txt"
    train default unet-m runs/gpu/unet-m-init.safetensors 3e-4 &
    train best unet-l runs/gpu/unet-l-init.safetensors 4e-4 &
    train blind unet-m runs/gpu/blind-m-init.safetensors 4e-4 --noise gaussian:0-50+poisson-gaussian:0.04,25 \
        --jpeg 70-95 &
    train fast fast weights/fast.safetensors 5e-4 &
    wait
    nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv >> "$OUT/gpu.txt" 2>&1
    for name in default best blind fast; do
        tail -4 "$RUNS/$name.log"
        if [ ! -f "$RUNS/$name.safetensors" ] && [ -f "$RUNS/$name.ckpt.safetensors" ]; then
            python3 benchmarks/export_checkpoint.py --ema "$RUNS/$name.ckpt.safetensors" "$RUNS/$name.safetensors"
        fi
    done
    tar czf "$OUT/train.tar.gz" -C "$RUNS" --exclude='*.ckpt.safetensors' .
    timeout 90 python3 -m pytest -q -p no:cacheprovider tests/core/inference/test_cuda.py 2>&1 | tail -5 | tee "$OUT/cuda_tests.txt"
    timeout 60 python3 benchmarks/core_speed.py --device cuda --repeats 20 2>&1 | tail -4 | tee "$OUT/core_speed_cuda.txt"
    timeout 60 python3 benchmarks/gpu_infer.py --device "$DEVICE" --repeats 5 2>&1 | tee "$OUT/infer.txt"
    cp benchmarks/results/core_speed_cuda.json "$OUT/" 2>/dev/null
    ls -la "$OUT"
}

run_blind() {  # second session: blind with more capacity (unet-l) against blind trained longer (unet-m)
    : "${OUT:?run this on the device machine, where OUT is set}"
    export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD TRAIN_SECONDS=${TRAIN_SECONDS:-260} RUNS=/tmp/gpu-runs
    export DEVICE=${DEVICE:-cuda} BATCH=${BATCH:-32} PATCH=${PATCH:-128}
    mkdir -p "$RUNS"
    local noise=gaussian:0-50+poisson-gaussian:0.04,25
    train blind-l unet-l runs/gpu/blind-l-init.safetensors 3e-4 --noise $noise --jpeg 70-95 &
    train blind-m2 unet-m runs/gpu/blind-m2-init.safetensors 2e-4 --noise $noise --jpeg 70-95 &
    wait
    for name in blind-l blind-m2; do tail -3 "$RUNS/$name.log"; done
    tar czf "$OUT/train.tar.gz" -C "$RUNS" --exclude='*.ckpt.safetensors' .
}

prepare_singles() {  # issue 24: each CBSD432 photo with ONE fixed noise draw (a second for the pairs)
    mkdir -p .gpudata
    grep -qx '/.gpudata/' .git/info/exclude 2>/dev/null || echo /.gpudata/ >> .git/info/exclude
    python3 benchmarks/single_shot.py --noise gaussian:25 --out .gpudata/singles-g25 2>/dev/null
    python3 benchmarks/single_shot.py --noise poisson-gaussian:0.04,25 --out .gpudata/singles-camera 2>/dev/null
    du -sh .gpudata
}

run_singles() {  # issue 24: Neighbor2Neighbor (single shots) against Noise2Noise (pairs of the same photos),
                 # unet-m from scratch, one budget each, Gaussian sigma 25 and camera noise; results: singles.tar.gz
    : "${OUT:?run this on the device machine, where OUT is set}"
    export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD TRAIN_SECONDS=${TRAIN_SECONDS:-400} RUNS=/tmp/gpu-runs
    export DEVICE=${DEVICE:-cuda} BATCH=${BATCH:-32} PATCH=${PATCH:-128}
    mkdir -p "$RUNS"
    local camera=poisson-gaussian:0.04,25
    for set in g25 camera; do
        local noise=gaussian:25
        [ $set = camera ] && noise=$camera
        train n2nb-$set unet-m - 4e-4 --method neighbor2neighbor --data .gpudata/singles-$set/singles \
            --val .gpudata/singles-$set/val --noise $noise &
        train n2n-$set unet-m - 4e-4 --data .gpudata/singles-$set/pairs --val .gpudata/singles-$set/val --noise $noise &
    done
    wait
    for name in n2nb-g25 n2n-g25 n2nb-camera n2n-camera; do tail -3 "$RUNS/$name.log"; done
    tar czf "$OUT/singles.tar.gz" -C "$RUNS" --exclude='*.ckpt.safetensors' .
}

case "${1:-}" in
    prepare) prepare ;;
    run) run ;;
    run-blind) run_blind ;;
    prepare-singles) prepare_singles ;;
    run-singles) run_singles ;;
    *) echo "usage: $0 prepare|run|run-blind|prepare-singles|run-singles" >&2; exit 2 ;;
esac
