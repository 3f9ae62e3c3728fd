"""Ship a trained model: copy its weights, card and training plot into weights/ under a name.

The card keeps the training set-up (the starting model's too, for a fine-tuned one), gains the
validation history and drops the metrics of any earlier model of that name: measure them again
with benchmarks/evaluate.py. A run without a card beside it (``benchmarks/gpu_train.py`` writes
none) gets one from the training metadata inside its weights file, and ``--init-card`` names the
card of the weights it started from. ``--ensemble N`` ships the network wrapped in a geometric
self-ensemble over N of the 8 flips and rotations (``n2n_core.nn.layers.SelfEnsemble``): one model id
for the weights plus that inference mode.

    python benchmarks/ship_weights.py runs/default2.safetensors default
    python benchmarks/ship_weights.py /tmp/gpu/best.safetensors best --ensemble 4 --init-card runs/gpu/unet-l-init.json \
        --device "cuda (NVIDIA H200, TF32 matmuls)"
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from n2n_core.nn.atomic import atomic_write, atomic_write_text  # noqa: E402
from n2n_core.nn.layers import SelfEnsemble  # noqa: E402
from n2n_core.nn.serialize import read_metadata, save  # noqa: E402
from n2n_core.weights import load  # noqa: E402
from n2n_core.weights import WEIGHTS_DIR  # noqa: E402

TARGETS = "noisy (Noise2Noise): no clean image was used for training"


def card_from_metadata(meta: dict[str, Any], init_card: dict[str, Any] | None, device: str) -> dict[str, Any]:
    """A card for a run that wrote none: its TrainConfig and totals, and the card of its start."""
    cfg = meta["config"]
    training = {key: cfg[key] for key in ("data", "noise", "jpeg", "batch_size", "patch_size", "learning_rate",
                                          "schedule", "warmup", "ema", "optimizer", "seed") if cfg.get(key) is not None}
    training.update({"data": "../shared/data/CBSD432" if Path(cfg["data"]).name == "CBSD432" else cfg["data"],
                     "steps": meta["steps"], "wall_seconds": meta["seconds"], "device": device, "targets": TARGETS})
    if cfg.get("init"):
        training["init"] = cfg["init"]
        if (init_card or {}).get("training"):
            training["init_training"] = init_card["training"]  # how the starting weights were made, recursively
    return {"architecture": cfg["arch"], "parameters": meta["parameters"], "training": training}


def ship(run: Path, name: str, machine: str = "cpu (2 cores)", ensemble: int = 1,
         init_card: Path | None = None) -> Path:
    _, meta = read_metadata(run)  # refuses anything but an n2n weights file
    card_path = run.with_suffix(".json")
    if card_path.exists():
        card = json.loads(card_path.read_text())
    else:
        card = card_from_metadata(meta, json.loads(init_card.read_text()) if init_card else None, machine)
    history = json.loads(run.with_suffix(".history.json").read_text())["history"]
    card.update({"name": name, "validation_history": [h for h in history if h.get("val_psnr") is not None],
                 "metrics": []})
    if card["training"].get("device") == "cpu":
        card["training"]["device"] = machine
    if Path(str(card["training"].get("init"))).stem == name:  # fine-tuned from the model it replaces
        card["training"]["init"] = f"the previous {name!r} model, trained as in init_training"
    card["training"]["targets"] = TARGETS
    out = WEIGHTS_DIR / f"{name}.safetensors"
    if ensemble > 1:
        card["inference"] = (f"geometric self-ensemble: the network's outputs on {ensemble} flips/rotations of the "
                             f"input, turned back and averaged ({ensemble}x the network's cost)")
        card["architecture"] = f"{card['architecture']} x{ensemble} self-ensemble"
        wrapped = SelfEnsemble(load(run), ensemble)
        save(wrapped, out, metadata={**meta, "self_ensemble": ensemble})
    else:
        atomic_write(out, lambda tmp: shutil.copyfile(run, tmp))
    atomic_write(out.with_suffix(".history.png"), lambda tmp: shutil.copyfile(run.with_suffix(".history.png"), tmp))
    atomic_write_text(out.with_suffix(".json"), json.dumps(card, indent=2) + "\n")
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    ap.add_argument("name")
    ap.add_argument("--ensemble", type=int, default=1, choices=[1, 2, 4, 8])
    ap.add_argument("--init-card", type=Path, default=None)
    ap.add_argument("--device", default="cpu (2 cores)", help="what trained it, for the card")
    args = ap.parse_args()
    print(ship(args.run, args.name, args.device, args.ensemble, args.init_card))
