"""Old import paths of modules that moved into the rooms of n2n_core (0.1 -> 0.2), kept working.

``import n2n_core.inference.infer`` or ``from n2n_core.training.train import Trainer`` (the flat layout of 0.1) give the
module at its new place (``n2n_core.inference.infer``, ``n2n_core.training.train``): the same module
object, so classes and functions are identical whichever path imported them. New code uses the new
paths; these aliases go away in 0.3.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
from types import ModuleType

#: old name (under n2n_core) -> new name (under n2n_core); the longest matching prefix wins
MOVED = {
    "module": "nn.module", "checks": "nn.checks", "init": "nn.init", "loss": "nn.loss", "optim": "nn.optim",
    "serialize": "nn.serialize", "atomic": "nn.atomic", "layers": "nn.layers", "functional": "nn.functional",
    "layers.adaptive": "inference.noise_adaptive",
    "images": "data.images", "metadata": "data.metadata", "noise": "data.noise", "noise_level": "data.noise_level",
    "heif": "data.heif", "raw": "data.raw", "frames": "data.frames", "image_errors": "data.image_errors",
    "receptive": "analysis",
    "infer": "inference.infer", "streaming": "inference.streaming", "precision": "inference.precision",
    "runtime": "inference.runtime", "export": "inference.export",
    "train": "training.train", "distributed": "training.distributed", "evaluate": "training.evaluate",
    "metrics": "training.metrics", "card": "training.card", "methods": "training.methods",
    "train_memory": "training.memory",
}


def new_name(old: str, package: str) -> str | None:
    """The new full name of the module once called ``old`` (full name), or None when it did not move."""
    if not old.startswith(package + "."):
        return None
    parts = old[len(package) + 1:].split(".")
    for cut in range(len(parts), 0, -1):
        moved = MOVED.get(".".join(parts[:cut]))
        if moved is not None:
            return ".".join([package, moved, *parts[cut:]])
    return None


class MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds an old module name and answers with the module at its new place (see ``MOVED``)."""

    def __init__(self, package: str) -> None:
        self.package = package

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> importlib.machinery.ModuleSpec | None:
        if new_name(fullname, self.package) is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        module = importlib.import_module(new_name(spec.name, self.package))  # type: ignore[arg-type]
        spec.loader_state = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        """Nothing to run: the module ran at its new place. The import system gave it the alias's spec; it
        gets its own back."""
        module.__spec__ = module.__spec__.loader_state  # type: ignore[union-attr]


def install(package: str) -> None:
    """Put the finder on ``sys.meta_path`` once."""
    if not any(isinstance(f, MovedModules) and f.package == package for f in sys.meta_path):
        sys.meta_path.append(MovedModules(package))
