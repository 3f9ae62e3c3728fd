"""Model cards: ``weights/NAME.json`` beside ``NAME.safetensors``."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .atomic import atomic_write_text


def write_card(weights: Path, trainer: Any) -> Path:
    """Architecture, parameter count and training set-up of a trained model; keeps measured metrics."""
    card_path = Path(weights).with_suffix(".json")
    card = json.loads(card_path.read_text()) if card_path.exists() else {}
    cfg = asdict(trainer.cfg)
    card.update({
        "name": Path(weights).stem,
        "architecture": cfg["arch"],
        "parameters": trainer.model.num_parameters(),
        "training": {"data": cfg["data"], "noise": cfg["noise"], "steps": trainer.step,
                     "batch_size": cfg["batch_size"], "patch_size": cfg["patch_size"],
                     "learning_rate": cfg["learning_rate"], "schedule": cfg["schedule"], "warmup": cfg["warmup"], "ema": cfg["ema"],
                     "optimizer": cfg["optimizer"],
                     "seed": cfg["seed"], "wall_seconds": round(trainer.elapsed, 1), "device": str(trainer.device),
                     "targets": "noisy (Noise2Noise): no clean image was used for training"},
    })
    if cfg.get("init"):
        card["training"]["init"] = cfg["init"]
        prior = _card_of(cfg["init"])
        if prior.get("training"):
            card["training"]["init_training"] = prior["training"]
    card.setdefault("metrics", [])
    atomic_write_text(card_path, json.dumps(card, indent=2) + "\n")
    return card_path


def _card_of(spec: str) -> dict[str, Any]:
    """The card of a weights file or shipped name, or {} when there is none."""
    from .weights import resolve

    try:
        path = resolve(spec).with_suffix(".json")
        return json.loads(path.read_text()) if path.is_file() else {}
    except (ValueError, OSError, json.JSONDecodeError):
        return {}


def add_metric(weights: Path, metric: dict[str, Any]) -> Path:
    """Record (or replace, by name) a measured metric with the command that reproduces it."""
    card_path = Path(weights).with_suffix(".json")
    card = json.loads(card_path.read_text()) if card_path.exists() else {"name": Path(weights).stem}
    card["metrics"] = [m for m in card.get("metrics", []) if m.get("name") != metric["name"]] + [metric]
    atomic_write_text(card_path, json.dumps(card, indent=2) + "\n")
    return card_path
