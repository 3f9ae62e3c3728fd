"""Widen shipped weights into a larger U-Net that computes exactly the same function, as a start for training.

    python benchmarks/widen.py --weights default --widths 32,48,64,96 --out runs/unet-m/init.safetensors

The new channels start silent (the weights that read them are zero), so training begins from the
shipped model's quality and adds capacity from there (``n2n train --init runs/unet-m/init.safetensors``).
The card beside the output keeps the source model's training record.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from n2n_core.nn.atomic import atomic_write_text  # noqa: E402
from n2n_core.models import arch_of, widen_unet  # noqa: E402
from n2n_core.nn.serialize import save  # noqa: E402
from n2n_core.weights import load  # noqa: E402
from n2n_core.weights import resolve  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", default="default")
    ap.add_argument("--widths", required=True, help="comma-separated channel widths per level, e.g. 32,48,64,96")
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0, help="seed of the new channels' random init")
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    torch.manual_seed(args.seed)
    src = resolve(args.weights)
    narrow = load(src).to(dtype=torch.float64)
    wide = widen_unet(narrow, tuple(int(w) for w in args.widths.split(",")))
    x = torch.rand(2, 3, 64, 64, dtype=torch.float64)
    gap = (narrow(x) - wide.to(dtype=torch.float64)(x)).abs().max().item()
    if gap > 1e-9:
        raise SystemExit(f"widening changed the output by {gap}")
    wide.to(dtype=torch.float32)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save(wide, out, metadata={"widened_from": str(args.weights)})
    card_path = src.with_suffix(".json")
    prior = json.loads(card_path.read_text()) if card_path.is_file() else {}
    card = {"name": out.stem, "architecture": arch_of(wide.config()), "parameters": wide.num_parameters(),
            "training": {"init": f"the shipped {args.weights!r} model, widened to {args.widths} with zero "
                                 f"read-out of the new channels (benchmarks/widen.py, seed {args.seed})",
                         "init_training": prior.get("training", {})},
            "metrics": []}
    atomic_write_text(out.with_suffix(".json"), json.dumps(card, indent=2) + "\n")
    print(f"{out}: {card['architecture']}, {card['parameters']} parameters, max output change {gap:.1e}")


if __name__ == "__main__":
    main()
