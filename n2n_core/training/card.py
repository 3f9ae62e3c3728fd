"""Model cards: ``weights/NAME.json`` beside ``NAME.safetensors``."""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

from n2n_core.nn.atomic import atomic_write_text

VALIDATION_FINAL = "validation PSNR (final)"
VALIDATION_BEST = "validation PSNR (best)"
TARGETS = {
    "clean": "noisy (Noise2Noise): no clean image was used for training",
    "pairs": "noisy (Noise2Noise): no clean image was used for training",
    "singles": "noisy (Neighbor2Neighbor): neighbouring pixels of single noisy photos; no clean image and no "
               "second shot was used for training",
}


def write_card(weights: Path, trainer: Any, name: str | None = None) -> Path:
    """Architecture, parameter count, training set-up and the validation PSNR the run measured (see
    ``validation_metrics``) of a trained model; keeps other measured metrics. ``name``: the model's name
    (default: the weights file's stem).

    Noisy pairs (A/B) are recorded as such, with no noise spec: no synthetic noise was added to them."""
    card_path = Path(weights).with_suffix(".json")
    card = json.loads(card_path.read_text()) if card_path.exists() else {}
    cfg = asdict(trainer.cfg)
    pairs = is_pairs(trainer.data.train)
    singles = cfg.get("method") == "neighbor2neighbor"
    kind = "singles" if singles else "pairs" if pairs else "clean"
    card.update({
        "name": name or Path(weights).stem,
        "architecture": cfg["arch"],
        "parameters": trainer.model.num_parameters(),
        "training": {"data": cfg["data"], "data_kind": kind,
                     "data_description": trainer.data.train.describe(),
                     "noise": cfg["noise"] if kind == "clean" or cfg["data"] == "builtin" else None,
                     "steps": trainer.step, **trainer.cfg.training_method().settings(),
                     "batch_size": cfg["batch_size"], "patch_size": cfg["patch_size"],
                     "learning_rate": cfg["learning_rate"], "schedule": cfg["schedule"], "warmup": cfg["warmup"], "ema": cfg["ema"],
                     "optimizer": cfg["optimizer"],
                     "seed": cfg["seed"], "wall_seconds": round(trainer.elapsed, 1), "device": str(trainer.device),
                     "targets": TARGETS[kind]},
    })
    if cfg.get("jpeg") and kind == "clean":
        card["training"]["jpeg"] = cfg["jpeg"]
        card["training"]["jpeg_inputs"] = f"half the training inputs saved as JPEG of a quality in {cfg['jpeg']}"
    if cfg.get("init"):
        card["training"]["init"] = cfg["init"]
        prior = _card_of(cfg["init"])
        if prior.get("training"):
            card["training"]["init_training"] = prior["training"]
    val_pairs = trainer.data.val[: cfg["val_images"]]
    measured = validation_metrics(trainer.history, len(val_pairs), _noisy_psnr(val_pairs), cfg["noise"],
                                  cfg["steps"], against=trainer.data.val_against)
    ours = {VALIDATION_FINAL, VALIDATION_BEST}
    card["metrics"] = measured + [m for m in card.get("metrics", []) if m.get("name") not in ours]
    atomic_write_text(card_path, json.dumps(card, indent=2) + "\n")
    return card_path


def is_pairs(source: Any) -> bool:
    """Whether a training source is noisy pairs (A/B, or a course file), to which no noise model applies."""
    from n2n_core.data.datasets import NoisyPairs

    return isinstance(source, NoisyPairs)


def _noisy_psnr(val_pairs: list[tuple[Any, Any]]) -> float | None:
    """Mean PSNR of the noisy validation inputs against their clean images: what doing nothing scores."""
    from n2n_core.training.metrics import psnr

    if not val_pairs:
        return None
    return round(sum(psnr(noisy, clean) for noisy, clean in val_pairs) / len(val_pairs), 3)


def validation_metrics(history: list[dict[str, Any]], images: int, noisy_psnr: float | None, noise: str,
                       planned_steps: int, against: str | None = None) -> list[dict[str, Any]]:
    """The card's entries for the validation PSNR a run measured: the final one (that of the weights
    written) and the best one, each saying how it was measured; [] when the run made no validation.
    ``against``: what the outputs were compared with, when not clean images with ``noise`` added."""
    vals = [h for h in history if isinstance(h.get("val_psnr"), (int, float)) and math.isfinite(h["val_psnr"])]
    if not vals or not images:
        return []
    held = f"{images} held-out validation image{'s' if images != 1 else ''}"
    how = (f"against {against}, over {held} (noisy_psnr: the inputs' PSNR against it)" if against else
           f"against the clean images, over {held} (noisy inputs: {noise} noise added with a fixed seed, stored as "
           "8-bit; noisy_psnr: the inputs' own PSNR)")
    protocol = f"mean PSNR (dB) of the network's output {how}; with weight averaging (ema), of the averaged weights"
    final, best = vals[-1], max(vals, key=lambda h: h["val_psnr"])

    def entry(name: str, h: dict[str, Any], when: str) -> dict[str, Any]:
        out = {"name": name, "psnr": round(h["val_psnr"], 3), "noisy_psnr": noisy_psnr, "images": images,
               "step": h["step"], "steps": planned_steps, "seconds": h.get("seconds"),
               "measured": f"{protocol}; {when}"}
        return {k: v for k, v in out.items() if v is not None}

    return [entry(VALIDATION_FINAL, final, f"at the last validation, step {final['step']} of {planned_steps}: "
                  "the weights written"),
            entry(VALIDATION_BEST, best, f"the highest of the {len(vals)} validations made during training "
                  f"(step {best['step']}); the weights written are those of the last step")]


def _card_of(spec: str) -> dict[str, Any]:
    """The card of a weights file or shipped name, or {} when there is none."""
    from n2n_core.weights import resolve

    try:
        return card_beside(resolve(spec))
    except ValueError:
        return {}


def card_beside(weights: Path) -> dict[str, Any]:
    """The card ``NAME.json`` beside the weights ``NAME.safetensors``, or {} when there is none or it cannot be read."""
    path = Path(weights).with_suffix(".json")
    try:
        card = json.loads(path.read_text()) if path.is_file() else {}
    except (ValueError, OSError):  # json.JSONDecodeError and UnicodeDecodeError are ValueErrors
        return {}
    return card if isinstance(card, dict) else {}


def add_metric(weights: Path, metric: dict[str, Any]) -> Path:
    """Record (or replace, by name) a measured metric with the command that reproduces it."""
    card_path = Path(weights).with_suffix(".json")
    card = json.loads(card_path.read_text()) if card_path.exists() else {"name": Path(weights).stem}
    card["metrics"] = [m for m in card.get("metrics", []) if m.get("name") != metric["name"]] + [metric]
    atomic_write_text(card_path, json.dumps(card, indent=2) + "\n")
    return card_path
