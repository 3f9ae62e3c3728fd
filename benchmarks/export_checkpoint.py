"""Export the model inside a training checkpoint as a standalone weights file (+ card).

    python benchmarks/export_checkpoint.py runs/default/unet-s.ckpt.safetensors weights/default.safetensors
    python benchmarks/export_checkpoint.py --ema runs/unet-m/model.ckpt.safetensors runs/unet-m/ema.safetensors

``--ema`` exports the checkpoint's moving average of the weights (what a finished run writes)
instead of its raw weights.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from safetensors import safe_open
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from n2n_core import save  # noqa: E402
from n2n_core.nn.atomic import atomic_write_text  # noqa: E402
from n2n_core.models import build  # noqa: E402


def main(ckpt: str, out: str, ema: bool = False) -> None:
    with safe_open(ckpt, framework="pt") as f:
        meta = f.metadata()
    cfg = json.loads(meta["config"])
    model = build(cfg["arch"])
    prefix = "ema." if ema else "model."
    tensors = {k[len(prefix):]: v for k, v in load_file(ckpt).items() if k.startswith(prefix)}
    if not tensors:
        raise SystemExit(f"{ckpt} holds no {prefix[:-1]} tensors")
    model.load_state_dict(tensors)
    history = json.loads(meta["history"])
    info = {"config": cfg, "steps": int(meta["step"]), "seconds": float(meta["elapsed"]),
            "parameters": model.num_parameters(), "exported_from": Path(ckpt).name,
            "weights": "moving average" if ema else "raw"}
    save(model, out, metadata=info)
    card_path = Path(out).with_suffix(".json")
    card = json.loads(card_path.read_text()) if card_path.exists() else {}
    card.update({"name": Path(out).stem, "architecture": cfg["arch"], "parameters": model.num_parameters(),
                 "training": {"data": cfg["data"], "noise": cfg["noise"], "steps": int(meta["step"]),
                              "planned_steps": cfg["steps"], "batch_size": cfg["batch_size"],
                              "patch_size": cfg["patch_size"], "learning_rate": cfg["learning_rate"],
                              "schedule": cfg["schedule"], "optimizer": cfg["optimizer"], "seed": cfg["seed"],
                              "wall_seconds": round(float(meta["elapsed"]), 1),
                              "device": "cpu (2 cores)" if cfg["device"] in ("cpu", "auto") else cfg["device"],
                              "targets": "noisy (Noise2Noise): no clean image was used for training"},
                 "validation_history": history})
    card.setdefault("metrics", [])
    atomic_write_text(card_path, json.dumps(card, indent=2) + "\n")
    print(f"wrote {out} ({model.num_parameters()} parameters, step {meta['step']})")


if __name__ == "__main__":
    flags = [a for a in sys.argv[1:] if a.startswith("--")]
    paths = [a for a in sys.argv[1:] if not a.startswith("--")]
    if len(paths) != 2 or set(flags) - {"--ema"}:
        raise SystemExit("usage: export_checkpoint.py [--ema] CHECKPOINT OUT")
    main(paths[0], paths[1], ema="--ema" in flags)
