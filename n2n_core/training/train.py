"""The Noise2Noise trainer: loop, learning-rate schedule, validation, checkpoints, resume, progress, cancel.

Checkpoints are safetensors files (model tensors under ``model.``, optimizer buffers under
``optim.``) with the step, configuration and history as JSON metadata, written atomically. The
data order depends only on (seed, step), so a resumed run continues exactly where it stopped.

Data-parallel runs (``dist``, see ``n2n_core.training.distributed``): every rank trains on its rows of the
same global batch, the ranks sum their share-weighted gradients before each optimizer step, so all
ranks hold identical weights, optimizer state and averages, equal to those of one process. Rank 0
alone validates, writes (checkpoints, weights, history) and reports progress; a checkpoint does not
record the number of processes, so a run resumes with any number (all ranks read it: with several
nodes the output folder must be shared).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from n2n_core.training import distributed
from n2n_core.nn.atomic import atomic_write, atomic_write_text
from n2n_core.data.datasets import BatchLoader, Dataset
from n2n_core.training.distributed import DistContext
from n2n_core.inference.infer import denoise
from n2n_core.training.methods import StepContext, TrainingMethod, make_method
from n2n_core.training.metrics import psnr
from n2n_core.models import DEFAULT_ARCH, arch_of, build, size_multiple
from n2n_core.nn.module import Module
from n2n_core.data.noise import parse_jpeg_inputs
from n2n_core.nn.optim import SGD, Adam, Optimizer
from n2n_core.nn.serialize import save, separate_cpu_tensors
from n2n_core.weights import load
from n2n_core.weights import resolve


@dataclass
class TrainConfig:
    arch: str = DEFAULT_ARCH
    steps: int = 10_000
    batch_size: int = 16
    patch_size: int = 64
    learning_rate: float = 1e-3
    optimizer: str = "adam"  # adam | sgd
    schedule: str = "cosine-tail"  # cosine-tail | cosine | constant
    tail: float = 0.3  # fraction of steps in the cosine tail
    warmup: int = 0
    ema: float = 0.0  # decay of an exponential moving average of the weights (0: off); it is what gets written
    val_every: int = 500
    checkpoint_every: int = 500
    val_images: int = 4
    seed: int = 0
    device: str = "auto"
    noise: str = "gaussian:25"
    jpeg: str | None = None  # e.g. "70-95": half the inputs saved as JPEG of such a quality (see noise.JpegInputs)
    data: str = "builtin"
    init: str | None = None  # start from these weights (a path or a shipped name) instead of a fresh init
    method: str = "noise2noise"  # noise2noise (pairs, or clean images + noise) | neighbor2neighbor (single photos)
    gamma: float = 2.0  # neighbor2neighbor: the regulariser's final weight (ramped from 0)
    cell: int = 2  # neighbor2neighbor: side of the sub-sampling cell (even; wider against correlated noise)

    def validate(self) -> None:
        if self.steps < 1 or self.batch_size < 1 or self.patch_size < 8:
            raise ValueError("steps and batch_size must be >= 1 and patch_size >= 8")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.optimizer not in ("adam", "sgd") or self.schedule not in ("cosine-tail", "cosine", "constant"):
            raise ValueError(f"unknown optimizer {self.optimizer!r} or schedule {self.schedule!r}")
        if self.val_every < 1 or self.checkpoint_every < 1:
            raise ValueError("val_every and checkpoint_every must be >= 1")
        if not 0 <= self.ema < 1 or self.warmup < 0:
            raise ValueError(f"ema must be in [0, 1) and warmup >= 0, got {self.ema} and {self.warmup}")
        parse_jpeg_inputs(self.jpeg)
        method = self.training_method()
        mult = size_multiple(build(self.arch))
        if self.patch_size % mult:
            raise ValueError(f"patch_size {self.patch_size} must be a multiple of {mult} for arch {self.arch!r}")
        if method.network_patch(self.patch_size) % mult or self.patch_size % self.cell:
            raise ValueError(f"patch_size {self.patch_size} must be a multiple of {mult * self.cell} for "
                             f"{self.method} with cell {self.cell} and arch {self.arch!r}: the network trains on "
                             f"sub-images of patch_size / cell pixels a side")

    def training_method(self) -> TrainingMethod:
        """The method this configuration names, with its settings."""
        return make_method(self.method, self.gamma, self.cell)


def learning_rate(cfg: TrainConfig, step: int) -> float:
    """Linear warm-up, then constant until the tail, then cosine decay to 1% of the base rate."""
    base = cfg.learning_rate
    if cfg.warmup and step < cfg.warmup:
        return base * (step + 1) / cfg.warmup
    start = {"constant": cfg.steps, "cosine": 0, "cosine-tail": int(cfg.steps * (1 - cfg.tail))}[cfg.schedule]
    if step < start:
        return base
    frac = (step - start) / max(1, cfg.steps - start)
    return base * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * frac)))


Wrap = Callable[[Module], Module]


def trainable_network(model: Module) -> tuple[Module, Wrap]:
    """(network, wrap): the named architecture inside ``model`` and the function that puts a trained copy of
    it back in the same inference wrappers (a noise-adaptive or self-ensemble model trains its body).

    Wrappers are the modules that rebuild themselves around a body (``Module.with_reduced_body``); a model
    that is a named architecture itself comes back as it is. ValueError when no named architecture is inside.
    """
    if arch_of(model.config()) is not None:
        return model, lambda trained: trained
    bodies: list[Module] = []
    if model.with_reduced_body(lambda body: bodies.append(body) or body) is None or not bodies:
        raise ValueError(f"{type(model).__name__} is not one of the named architectures (n2n_core.models), "
                         "nor a wrapper around one, which fine-tuning needs")
    network, inner_wrap = trainable_network(bodies[0])
    return network, lambda trained: model.with_reduced_body(lambda _body: inner_wrap(trained))  # type: ignore[return-value]


def arch_of_weights(spec: str) -> str:
    """The named architecture a weights file (or shipped name) trains as (see ``trainable_network``)."""
    network, _ = trainable_network(load(resolve(spec)))
    return arch_of(network.config())  # type: ignore[return-value]


def initial_model(cfg: TrainConfig) -> tuple[Module, Wrap]:
    """(network, wrap): ``build(cfg.arch)`` with a fresh init, or the network inside the weights named by
    ``cfg.init`` (same architecture) with the wrappers its trained copy is written in."""
    if cfg.init is None:
        return build(cfg.arch), lambda trained: trained
    network, wrap = trainable_network(load(resolve(cfg.init)))
    if arch_of(network.config()) != cfg.arch:
        raise ValueError(f"init weights {cfg.init!r} are not a {cfg.arch!r} network; pass the matching arch")
    return network, wrap


def resolve_device(name: str) -> torch.device:
    """'auto' (CUDA when available), 'cpu', 'cuda' or 'cuda:N'."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ValueError(f"unknown device {name!r}; use auto, cpu or cuda") from None
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"unsupported device {name!r}; use auto, cpu or cuda")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available")
    return dev


class TrainingDiverged(ValueError):
    """The training loss became NaN or infinite. The run stops at once; the last checkpoint (written
    before the loss broke) is kept, and no weights are written."""


@dataclass
class TrainResult:
    status: str  # succeeded | cancelled
    step: int
    history: list[dict[str, Any]] = field(default_factory=list)
    weights: str | None = None
    seconds: float = 0.0


Progress = Callable[[dict[str, Any]], None]


class Trainer:
    """Trains ``build(cfg.arch)`` on ``data`` and writes ``out`` (+ .ckpt, .history.json, .history.png).

    progress(info) is called at least every ``progress_seconds`` with step, total, fraction, loss,
    lr, val_psnr and elapsed; should_stop() is polled every step and ends the run as cancelled
    after a checkpoint. A NaN or infinite loss raises TrainingDiverged (no checkpoint of the broken
    weights is written).

    ``dist`` (default: one process) makes this one rank of a data-parallel run whose process group is
    already initialised; ``cfg.batch_size`` stays the global batch, and on CUDA the rank trains on
    ``cuda:LOCAL_RANK``. A cancel asked of any rank (usually rank 0) stops all of them at the same step.
    """

    def __init__(self, cfg: TrainConfig, data: Dataset, out: str | Path, progress: Progress | None = None,
                 should_stop: Callable[[], bool] | None = None, progress_seconds: float = 1.0,
                 model: Module | None = None, dist: DistContext | None = None) -> None:
        cfg.validate()
        self.cfg, self.data, self.out = cfg, data, Path(out)
        self.dist = dist or distributed.SINGLE
        self.shard = distributed.shard_bounds(cfg.batch_size, self.dist)
        self.progress = progress if self.dist.is_main else None
        self.should_stop = should_stop or (lambda: False)
        self.progress_seconds = progress_seconds
        self.device = resolve_device(cfg.device)
        if self.dist.active:
            self.device = distributed.rank_device(self.dist, self.device.type)
        torch.manual_seed(cfg.seed)
        network, self.wrap = (model, lambda trained: trained) if model is not None else initial_model(cfg)
        self.model = network.to(self.device)
        self.optim: Optimizer = (Adam(self.model, cfg.learning_rate) if cfg.optimizer == "adam"
                                 else SGD(self.model, cfg.learning_rate, momentum=0.9))
        self.ema: dict[str, Tensor] | None = (
            {k: v.clone() for k, v in self.model.state_dict().items()} if cfg.ema else None)
        self.history: list[dict[str, Any]] = []
        self.step = 0
        self.elapsed = 0.0

    @property
    def checkpoint_path(self) -> Path:
        return self.out.with_suffix(".ckpt.safetensors")

    # -- checkpoints -------------------------------------------------------------------------
    def save_checkpoint(self) -> None:
        """Model, optimizer buffers and averages (+ step, config, history as metadata); rank 0 only."""
        if not self.dist.is_main:
            return
        tensors = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        osd = self.optim.state_dict()
        tensors.update({f"optim.{k}": v for k, v in osd["buffers"].items()})
        if self.ema is not None:
            tensors.update({f"ema.{k}": v for k, v in self.ema.items()})
        tensors = separate_cpu_tensors(tensors)  # shared or tied weights: one copy per name
        meta = {"step": str(self.step), "elapsed": str(self.elapsed), "optim_steps": str(osd["steps"]),
                "config": json.dumps(asdict(self.cfg)), "history": json.dumps(self.history)}
        atomic_write(self.checkpoint_path, lambda tmp: save_file(tensors, tmp, metadata=meta))

    def load_checkpoint(self) -> bool:
        path = self.checkpoint_path
        if not path.exists():
            return False
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata()
        saved = json.loads(meta["config"])
        defaults = asdict(TrainConfig())  # what a checkpoint written before a setting existed was made with
        for key in ("arch", "batch_size", "patch_size", "seed", "noise", "jpeg", "data", "method", "cell"):
            if saved.get(key, defaults[key]) != getattr(self.cfg, key):
                raise ValueError(f"checkpoint {path} was made with {key}={saved.get(key, defaults[key])!r}, not "
                                 f"{getattr(self.cfg, key)!r}; delete it or use the same settings")
        tensors = load_file(str(path))
        self.model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        self.optim.load_state_dict({"steps": int(meta["optim_steps"]), "lr": self.cfg.learning_rate,
                                    "buffers": {k[6:]: v if k.endswith(".step") else v.to(self.device)
                                                for k, v in tensors.items() if k.startswith("optim.")}})
        if self.ema is not None:
            saved_ema = {k[4:]: v for k, v in tensors.items() if k.startswith("ema.")}
            for k, v in self.ema.items():  # a checkpoint without an average starts it from the weights
                v.copy_(saved_ema.get(k, self.model.state_dict()[k]))
        self.step, self.elapsed = int(meta["step"]), float(meta["elapsed"])
        self.history = json.loads(meta["history"])
        return True

    # -- weight averaging --------------------------------------------------------------------
    def update_ema(self) -> None:
        """ema = d ema + (1 - d) w, with d = min(cfg.ema, (1 + t) / (10 + t)) so that early steps count."""
        if self.ema is None:
            return
        decay = min(self.cfg.ema, (2 + self.step) / (11 + self.step))  # self.step: steps before this one
        for k, w in self.model.state_dict().items():
            self.ema[k].lerp_(w, 1 - decay)

    @contextmanager
    def averaged_weights(self) -> Iterator[None]:
        """Within the block the model holds the averaged weights (when averaging is on)."""
        if self.ema is None:
            yield
            return
        current = {k: v.clone() for k, v in self.model.state_dict().items()}
        self.model.load_state_dict(self.ema)
        try:
            yield
        finally:
            self.model.load_state_dict(current)

    # -- evaluation --------------------------------------------------------------------------
    def validate(self) -> float | None:
        """Mean PSNR of the (averaged) model on the first ``cfg.val_images`` pairs; None on ranks other than 0."""
        pairs = self.data.val[: self.cfg.val_images]
        if not pairs or not self.dist.is_main:
            return None
        with self.averaged_weights():
            scores = [psnr(denoise(self.model, noisy.to(self.device)).cpu(), clean) for noisy, clean in pairs]
        return sum(scores) / len(scores)

    def _report(self, **info: Any) -> None:
        if self.progress is not None:
            total = self.cfg.steps
            self.progress({"step": self.step, "total": total, "fraction": self.step / total, **info})

    # -- the loop ----------------------------------------------------------------------------
    def run(self, resume: bool = True) -> TrainResult:
        cfg = self.cfg
        distributed.barrier(self.dist)  # rank 0 may have removed a stale checkpoint just before
        if resume and self.load_checkpoint():
            self._report(loss=None, resumed=True, elapsed=self.elapsed)
        distributed.broadcast_model(self.model, self.dist)
        method = cfg.training_method()
        lo, hi = self.shard
        share = (hi - lo) / cfg.batch_size  # this rank's weight in the global mean
        dtype = self.model.parameters()[0].dtype
        loader = BatchLoader(self.data.train, cfg.seed, cfg.batch_size, cfg.patch_size, self.step, cfg.steps)
        t_start, last_report = time.perf_counter() - self.elapsed, 0.0
        window: list[float] = []
        status = "succeeded"
        try:
            for step, inp, tgt in loader:
                stop = self.should_stop()
                if stop and not self.dist.active:
                    status = "cancelled"
                    break
                if self.dist.active:
                    inp, tgt = inp[lo:hi], tgt[lo:hi]
                inp = inp.to(self.device, dtype, non_blocking=True)
                tgt = tgt.to(self.device, dtype, non_blocking=True)
                self.optim.lr = learning_rate(cfg, step)
                context = StepContext(step, cfg.steps, cfg.seed, cfg.batch_size, (lo, hi))
                step_loss = method.train_step(self.model, inp, tgt, context)
                loss, stop = distributed.reduce_step(self.model, step_loss, stop, share, self.dist)
                if stop:  # asked of some rank during this step: every rank drops the step alike
                    status = "cancelled"
                    break
                self.optim.step()
                self.update_ema()
                window.append(loss)
                if not math.isfinite(window[-1]):
                    raise TrainingDiverged(f"training diverged: the loss became {window[-1]} at step {step + 1} "
                                           f"(learning rate {self.optim.lr:g}); try a lower learning rate")
                self.step = step + 1
                self.elapsed = time.perf_counter() - t_start
                val = None
                if self.step % cfg.val_every == 0 or self.step == cfg.steps:
                    val = self.validate()
                    self.history.append({"step": self.step, "loss": sum(window) / len(window), "val_psnr": val,
                                         "lr": self.optim.lr, "seconds": round(self.elapsed, 2)})
                    window = []
                now = time.perf_counter()
                if val is not None or now - last_report >= self.progress_seconds or self.step == cfg.steps:
                    last_report = now
                    self._report(loss=window[-1] if window else self.history[-1]["loss"], lr=self.optim.lr,
                                 val_psnr=val if val is not None else self.last_val_psnr(), elapsed=self.elapsed)
                if self.step % cfg.checkpoint_every == 0:
                    self.save_checkpoint()
        finally:
            loader.close()
        self.elapsed = time.perf_counter() - t_start
        if window:
            self.history.append({"step": self.step, "loss": sum(window) / len(window), "val_psnr": None,
                                 "lr": self.optim.lr, "seconds": round(self.elapsed, 2)})
        self.save_checkpoint()
        result = TrainResult(status, self.step, self.history, seconds=self.elapsed)
        if status == "succeeded" and self.dist.is_main:
            result.weights = str(self.write_outputs())
        distributed.barrier(self.dist)  # the outputs exist before any rank returns
        return result

    def last_val_psnr(self) -> float | None:
        vals = [h["val_psnr"] for h in self.history if h.get("val_psnr") is not None]
        return vals[-1] if vals else None

    def write_outputs(self) -> Path:
        """Final weights (with training metadata), the history JSON and its plot."""
        meta = {"config": asdict(self.cfg), "steps": self.step, "seconds": round(self.elapsed, 1),
                "device": str(self.device), "val_psnr": self.last_val_psnr(), "parameters": self.model.num_parameters(),
                "data": self.data.train.describe()}
        if self.dist.active:
            meta["processes"] = self.dist.world_size
        with self.averaged_weights():
            save(self.wrap(self.model), self.out, metadata=meta)
        hist = self.out.with_suffix(".history.json")
        atomic_write_text(hist, json.dumps({"meta": meta, "history": self.history}, indent=1))
        plot_history(self.history, self.out.with_suffix(".history.png"))
        return self.out


def plot_history(history: list[dict[str, Any]], path: Path) -> None:
    """Loss and validation PSNR against step, as a PNG (written atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    steps = [h["step"] for h in history]
    ax.plot(steps, [h["loss"] for h in history], color="tab:blue", label="training loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (MSE to noisy target)", color="tab:blue")
    ax.set_yscale("log")
    vals = [(h["step"], h["val_psnr"]) for h in history if h.get("val_psnr") is not None]
    if vals:
        ax2 = ax.twinx()
        ax2.plot(*zip(*vals), color="tab:orange", marker="o", label="validation PSNR")
        ax2.set_ylabel("validation PSNR (dB)", color="tab:orange")
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)
