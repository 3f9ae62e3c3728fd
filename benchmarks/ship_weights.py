"""Ship a trained model: copy its weights, card and training plot into weights/ under a name.

The card keeps the training set-up (the starting model's too, for a fine-tuned one), gains the
validation history and drops the metrics of any earlier model of that name: measure them again
with benchmarks/evaluate.py.

    python benchmarks/ship_weights.py runs/default2.safetensors default
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from n2n_core.atomic import atomic_write, atomic_write_text  # noqa: E402
from n2n_core.serialize import read_metadata  # noqa: E402
from n2n_core.weights import WEIGHTS_DIR  # noqa: E402


def ship(run: Path, name: str, machine: str = "cpu (2 cores)") -> Path:
    read_metadata(run)  # refuses anything but an n2n weights file
    card = json.loads(run.with_suffix(".json").read_text())
    history = json.loads(run.with_suffix(".history.json").read_text())["history"]
    card.update({"name": name, "validation_history": [h for h in history if h.get("val_psnr") is not None],
                 "metrics": []})
    if card["training"].get("device") == "cpu":
        card["training"]["device"] = machine
    if card["training"].get("init") == name:  # fine-tuned from the model it replaces
        card["training"]["init"] = f"the previous {name!r} model, trained as in init_training"
    card["training"]["targets"] = "noisy (Noise2Noise): no clean image was used for training"
    out = WEIGHTS_DIR / f"{name}.safetensors"
    atomic_write(out, lambda tmp: shutil.copyfile(run, tmp))
    atomic_write(out.with_suffix(".history.png"), lambda tmp: shutil.copyfile(run.with_suffix(".history.png"), tmp))
    atomic_write_text(out.with_suffix(".json"), json.dumps(card, indent=2) + "\n")
    return out


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    print(ship(Path(sys.argv[1]), sys.argv[2]))
