#!/bin/sh
# Issue 24: unet-m trained with Neighbor2Neighbor on CBSD432 single shots (one fixed gaussian:25 draw each,
# benchmarks/single_shot.py --noise gaussian:25 --out data/singles-g25), 12 clean CBSD432 photos held out.
# Resumes from runs/n2nb-g25/model.ckpt.safetensors; rerun this script in each session until it finishes.
cd "$(dirname "$0")/../.."
[ -d data/singles-g25/singles ] || .venv/bin/python benchmarks/single_shot.py --noise gaussian:25 --out data/singles-g25 2>/dev/null
exec env OMP_NUM_THREADS=${THREADS:-1} .venv/bin/n2n train --method neighbor2neighbor --arch unet-m \
  --data data/singles-g25/singles --val data/singles-g25/val \
  --steps 24000 --batch-size 16 --patch-size 128 --lr 5e-4 --schedule cosine --warmup 200 --ema 0.999 \
  --val-every 1000 --checkpoint-every 250 --device cpu --out runs/n2nb-g25/model.safetensors
