"""Train within a wall-clock budget: measure the step time first, then plan a full schedule that fits.

    python benchmarks/gpu_train.py --name default --arch unet-m --init runs/unet-m/ema.safetensors \
        --data .gpudata/CBSD432 --seconds 360 --batch-size 32 --patch-size 128 --device cuda --out-dir /tmp/runs

A cosine schedule that is cut short ends at a high learning rate, so a run given a few minutes on a
borrowed GPU first times ``--probe-steps`` steps of the same configuration (in this process, with
whatever else shares the device), then trains ``steps = margin * remaining / seconds_per_step``
steps: a complete schedule, EMA and validation included, in the time left (past the budget plus
``--grace`` seconds it stops where it is and writes its averaged weights anyway). It writes
``OUT_DIR/NAME.safetensors`` (+ history) and ``OUT_DIR/NAME.summary.json``; checkpoints go beside
them every ``--checkpoint-every`` steps, so a run killed anyway can be exported
(``benchmarks/export_checkpoint.py``).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from n2n_core.data.datasets import open_dataset  # noqa: E402
from n2n_core.data.noise import parse_jpeg_inputs, parse_noise  # noqa: E402
from n2n_core.training.train import Trainer, TrainConfig  # noqa: E402


def seconds_per_step(cfg: TrainConfig, data, probe_steps: int) -> float:
    """Seconds per step of ``cfg``: the mean over steps [probe/3, probe) of a throwaway run without validation."""
    stamps: dict[int, float] = {}
    probe = replace(cfg, steps=probe_steps, val_every=10**9, checkpoint_every=10**9, ema=0.0)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(probe, replace(data, val=[]), Path(tmp) / "probe.safetensors",
                          progress=lambda info: stamps.setdefault(info["step"], time.perf_counter()),
                          progress_seconds=0.0)
        trainer.run(resume=False)
    first = probe_steps // 3
    return (stamps[probe_steps] - stamps[first]) / (probe_steps - first)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--name", required=True)
    ap.add_argument("--arch", required=True)
    ap.add_argument("--init", default=None)
    ap.add_argument("--data", required=True)
    ap.add_argument("--noise", default="gaussian:25")
    ap.add_argument("--jpeg", default=None)
    ap.add_argument("--method", default="noise2noise", choices=["noise2noise", "neighbor2neighbor"])
    ap.add_argument("--gamma", type=float, default=2.0, help="neighbor2neighbor: the regulariser's final weight")
    ap.add_argument("--cell", type=int, default=2, help="neighbor2neighbor: the sub-sampling cell")
    ap.add_argument("--val", default=None, help="clean validation photos (default: held out of --data)")
    ap.add_argument("--seconds", type=float, required=True, help="wall-clock budget of the whole script")
    ap.add_argument("--margin", type=float, default=0.8, help="share of the time left that the schedule plans for")
    ap.add_argument("--grace", type=float, default=20.0,
                    help="seconds past the budget after which the run stops where it is and writes its averaged weights")
    ap.add_argument("--probe-steps", type=int, default=45)
    ap.add_argument("--max-steps", type=int, default=100_000)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--patch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=4e-4)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--ema", type=float, default=0.999)
    ap.add_argument("--val-every", type=int, default=500)
    ap.add_argument("--checkpoint-every", type=int, default=500)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads of this process (0: torch's default)")
    ap.add_argument("--tf32", action="store_true", help="allow TF32 matmuls on CUDA (training only)")
    ap.add_argument("--out-dir", required=True)
    args = ap.parse_args()
    started = time.perf_counter()
    torch.set_grad_enabled(False)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.backends.cuda.matmul.allow_tf32 = bool(args.tf32)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg = TrainConfig(arch=args.arch, init=args.init, steps=1, batch_size=args.batch_size, patch_size=args.patch_size,
                      learning_rate=args.lr, schedule="cosine", warmup=args.warmup, ema=args.ema, device=args.device,
                      noise=args.noise, jpeg=args.jpeg, data=args.data, val_every=args.val_every,
                      checkpoint_every=args.checkpoint_every, method=args.method, gamma=args.gamma, cell=args.cell)
    data = open_dataset(args.data, parse_noise(args.noise), val_spec=args.val, jpeg=parse_jpeg_inputs(args.jpeg),
                        singles=args.method == "neighbor2neighbor", cell=args.cell)
    per_step = seconds_per_step(cfg, data, args.probe_steps)
    left = args.seconds - (time.perf_counter() - started)
    steps = max(1, min(args.max_steps, int(args.margin * left / per_step)))
    cfg = replace(cfg, steps=steps, warmup=min(args.warmup, steps // 10))
    print(json.dumps({"name": args.name, "seconds_per_step": round(per_step, 5), "planned_steps": steps}), flush=True)
    last = [0.0]

    def progress(info: dict) -> None:
        if info.get("val_psnr") is not None and time.perf_counter() - last[0] > 20:
            last[0] = time.perf_counter()
            print(f"{args.name} step {info['step']}/{info['total']} loss {info.get('loss')} "
                  f"val {info['val_psnr']:.3f} dB  {info['elapsed']:.0f}s", flush=True)

    deadline = started + args.seconds + args.grace
    trainer = Trainer(cfg, data, out_dir / f"{args.name}.safetensors", progress=progress,
                      should_stop=lambda: time.perf_counter() > deadline)
    result = trainer.run(resume=False)
    if result.status == "cancelled":  # over time: keep what was learnt (the schedule did not finish)
        trainer.write_outputs()
    summary = {"name": args.name, "config": asdict(cfg), "seconds_per_step_probe": per_step, "steps": result.step,
               "train_seconds": round(result.seconds, 1), "status": result.status,
               "val_psnr": [h for h in result.history if h.get("val_psnr") is not None],
               "device": torch.cuda.get_device_name() if cfg.device.startswith("cuda") else cfg.device,
               "tf32": bool(args.tf32), "torch": torch.__version__}
    (out_dir / f"{args.name}.summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps({k: summary[k] for k in ("name", "steps", "train_seconds", "status")}), flush=True)


if __name__ == "__main__":
    main()
