#!/usr/bin/env bash
# Issue 24 on a lent GPU: Neighbor2Neighbor (single shots) against Noise2Noise (pairs of the same photos),
# same architecture (unet-m) and the same wall-clock budget, for Gaussian sigma 25 and for camera noise.
#
#   bash benchmarks/gpu_singles.sh prepare   # here: .gpudata/singles-{g25,camera} (benchmarks/single_shot.py:
#                                            #   each CBSD432 photo with ONE fixed noise draw, a second for pairs)
#   bash benchmarks/gpu_singles.sh run       # there (carry .gpudata); results come back as $OUT/singles.tar.gz
#
# Then, here: python benchmarks/evaluate.py --weights <run>.safetensors --data ../shared/data/CBSD68 [--noise ...]
set -uo pipefail
cd "$(dirname "$0")/.."

prepare() {
    mkdir -p .gpudata
    grep -qx '/.gpudata/' .git/info/exclude 2>/dev/null || echo /.gpudata/ >> .git/info/exclude
    python3 benchmarks/single_shot.py --noise gaussian:25 --out .gpudata/singles-g25 2>/dev/null
    python3 benchmarks/single_shot.py --noise poisson-gaussian:0.04,25 --out .gpudata/singles-camera 2>/dev/null
    du -sh .gpudata
}

train() {  # NAME SET METHOD DATA_SUBFOLDER NOISE
    local name=$1 set=$2 method=$3 sub=$4 noise=$5
    timeout $((TRAIN_SECONDS + 60)) python3 benchmarks/gpu_train.py --name "$name" --arch unet-m --method "$method" \
        --data ".gpudata/$set/$sub" --val ".gpudata/$set/val" --noise "$noise" --lr 4e-4 --device "$DEVICE" --tf32 \
        --threads 3 --seconds "$TRAIN_SECONDS" --batch-size "$BATCH" --patch-size "$PATCH" --warmup 200 --ema 0.999 \
        --val-every 250 --checkpoint-every 500 --out-dir "$RUNS" > "$RUNS/$name.log" 2>&1
}

run() {
    : "${OUT:?run this on the device machine, where OUT is set}"
    export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD TRAIN_SECONDS=${TRAIN_SECONDS:-400} RUNS=/tmp/singles-runs
    export DEVICE=${DEVICE:-cuda} BATCH=${BATCH:-32} PATCH=${PATCH:-128}
    mkdir -p "$RUNS"
    { nvidia-smi -L; python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"; } \
        2>&1 | tee "$OUT/gpu.txt"
    train n2nb-g25 singles-g25 neighbor2neighbor singles gaussian:25 &
    train n2n-g25 singles-g25 noise2noise pairs gaussian:25 &
    train n2nb-camera singles-camera neighbor2neighbor singles poisson-gaussian:0.04,25 &
    train n2n-camera singles-camera noise2noise pairs poisson-gaussian:0.04,25 &
    wait
    for name in n2nb-g25 n2n-g25 n2nb-camera n2n-camera; do tail -3 "$RUNS/$name.log"; done
    tar czf "$OUT/singles.tar.gz" -C "$RUNS" --exclude='*.ckpt.safetensors' .
    ls -la "$OUT"
}

"$@"
