"""The ``n2n`` command: train, eval, denoise, export, serve."""

from __future__ import annotations

import argparse
import json
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from collections.abc import Callable

    from n2n_core.training.distributed import DistContext
    from n2n_core.training.train import TrainConfig



def _progress_bar(total: int | None, desc: str, unit: str = "step", enabled: bool | None = None, leave: bool = True):
    """A tqdm bar on stderr; ``enabled`` None: only when stderr is a terminal."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True, file=sys.stderr, leave=leave,
                disable=None if enabled is None else not enabled)


def show_progress(choice: bool | None, stream: TextIO) -> bool:
    """Whether to draw progress bars: True/False as --progress/--no-progress say, else (None) only when
    ``stream`` is a terminal."""
    if choice is not None:
        return choice
    isatty = getattr(stream, "isatty", None)
    return bool(isatty is not None and isatty())


PRECISION_CHOICES = ("auto", "float32", "bfloat16", "float16")  # n2n_core.inference.precision.PRECISIONS, without torch
METHOD_CHOICES = ("noise2noise", "neighbor2neighbor")  # n2n_core.training.methods.METHODS, without torch
PRECISION_HELP = ("the type of the network's matrix products: auto (default, or N2N_PRECISION) picks bfloat16 on "
                  "CPUs with AMX or AVX512-BF16 and GPUs with bfloat16 tensor cores, float32 elsewhere")

PHOTO_BAR_PIXELS = 1_000_000  # a photo this large gets a bar of its own from the start, before its first step


def needs_photo_bar(pixels: int, total_steps: int | None) -> bool:
    """A photo gets a progress bar of its own when it has PHOTO_BAR_PIXELS or more, or takes more than one
    step (``total_steps`` None: not known yet)."""
    return pixels >= PHOTO_BAR_PIXELS or (total_steps is not None and total_steps > 1)


class PhotoProgress:
    """The progress bar of one photo in `n2n denoise`: opened by ``start`` for a large photo, or at the first
    step of one that takes several; ``step`` is ``run_steps``' progress callback. Drawn only when ``enabled``,
    and cleared by ``close`` (the line naming the file written replaces it). While it is open a daemon thread
    redraws it every ``tick_seconds``, so that its elapsed time moves during a long step."""

    def __init__(self, name: str, enabled: bool, tick_seconds: float = 1.0) -> None:
        self.name = name
        self.enabled = enabled
        self.tick_seconds = tick_seconds
        self.pixels = 0
        self.bar: Any = None
        self._closed = threading.Event()

    def _open(self, total: int | None) -> None:
        self.bar = _progress_bar(total, self.name, unit="tile", enabled=True, leave=False)
        self.bar.refresh()
        threading.Thread(target=self._tick, args=(self.bar,), name=f"progress {self.name}", daemon=True).start()

    def _tick(self, bar: Any) -> None:
        while not self._closed.wait(self.tick_seconds):
            bar.refresh()

    def start(self, pixels: int) -> None:
        """The photo is decoded (``pixels`` in all) and its denoising starts."""
        self.pixels = pixels
        if self.enabled and needs_photo_bar(pixels, None):
            self._open(None)

    def step(self, done: int, total: int) -> None:
        """``done`` of ``total`` steps of the photo are finished."""
        if not self.enabled:
            return
        if self.bar is None:
            if not needs_photo_bar(self.pixels, total):
                return
            self._open(total)
        if self.bar.total != total:
            self.bar.total = total
        self.bar.update(done - self.bar.n)
        self.bar.refresh()  # every step, even one that ends within tqdm's minimum interval of the last

    def close(self) -> None:
        self._closed.set()
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def denoise_summary(written: int, megapixels: float, seconds: float, out_dir: Path, precision: str = "float32",
                    skipped: int = 0) -> str:
    """The line `n2n denoise` ends with when every photo was written (or skipped: ``--skip-existing``)."""
    photos = "1 photo" if written == 1 else f"{written} photos"
    kept = (f"; {skipped} skipped, {'its' if skipped == 1 else 'their'} output already there (--skip-existing)"
            if skipped else "")
    return (f"n2n: {photos} denoised ({megapixels:.1f} megapixels) in {seconds:.1f} s ({precision}), "
            f"written to {out_dir}{kept}")


def _load_model(weights: str | None, device: str):
    from n2n_core.weights import load_with_metadata
    from n2n_core.training.train import resolve_device
    from n2n_core.weights import resolve

    path = resolve(weights)
    model, meta = load_with_metadata(path, device=resolve_device(device))
    return model, meta, path


# ----------------------------------------------------------------------------- train


def _train_config(args: argparse.Namespace) -> TrainConfig:
    """The validated TrainConfig of `n2n train`'s options."""
    from n2n_core.models import DEFAULT_ARCH
    from n2n_core.training.train import TrainConfig, arch_of_weights

    arch = args.arch or (arch_of_weights(args.init) if args.init else DEFAULT_ARCH)
    shared = {"batch_size": args.batch_size, "patch_size": args.patch_size, "learning_rate": args.lr,
              "seed": args.seed, "gamma": args.gamma, "cell": args.cell}  # None: TrainConfig's default, which POST /train shares (app/schemas.py)
    cfg = TrainConfig(arch=arch, init=args.init, steps=args.steps, optimizer=args.optimizer,
                      schedule=args.schedule, warmup=args.warmup, ema=args.ema,
                      device=args.device, noise=args.noise, data=args.data, jpeg=args.jpeg or None,
                      val_every=args.val_every, checkpoint_every=args.checkpoint_every, method=args.method,
                      **{k: v for k, v in shared.items() if v is not None})
    cfg.validate()
    return cfg


def cmd_train(args: argparse.Namespace) -> int:
    """One process, N spawned processes (--nproc-per-node), or one rank of a torchrun job."""
    from n2n_core.training import distributed

    cfg = _train_config(args)
    under_torchrun = distributed.context_from_env()
    if under_torchrun is not None and args.nproc_per_node != 1:
        raise ValueError("--nproc-per-node is for local launches; under torchrun pass --nproc-per-node to torchrun")
    if under_torchrun is not None and under_torchrun.active:
        distributed.init_process_group(under_torchrun, distributed.device_type_of(cfg.device))
        try:
            summary = _train_rank(under_torchrun, args)
        finally:
            distributed.shutdown()
    elif args.nproc_per_node != 1:
        device_type = distributed.device_type_of(cfg.device)
        distributed.check_nproc(args.nproc_per_node, device_type)
        distributed.shard_bounds(cfg.batch_size, distributed.DistContext(0, args.nproc_per_node))
        summary = distributed.launch(_train_rank, args.nproc_per_node, (args,), device_type)
    else:
        summary = _train_rank(distributed.SINGLE, args)
    if summary is not None:  # rank 0
        print(json.dumps(summary))
    return 0


def _train_rank(ctx: DistContext, args: argparse.Namespace) -> dict[str, Any] | None:
    """Train as rank ``ctx.rank``; rank 0 shows progress, writes the card and returns the summary."""
    from n2n_core.training.card import write_card
    from n2n_core.data.datasets import NoisyPairs, open_dataset
    from n2n_core.data.noise import parse_jpeg_inputs, parse_noise
    from n2n_core.training.train import Trainer

    cfg = _train_config(args)
    noise = parse_noise(args.noise)
    data = open_dataset(args.data, noise, val_spec=args.val, seed=cfg.seed, jpeg=parse_jpeg_inputs(cfg.jpeg),
                        singles=cfg.method == "neighbor2neighbor", cell=cfg.cell)

    def progress(info: dict[str, Any]) -> None:
        bar.n = info["step"]
        post = {"loss": f"{info['loss']:.4g}" if info.get("loss") is not None else "-"}
        if info.get("val_psnr") is not None:
            post["val"] = f"{info['val_psnr']:.2f}dB"
        bar.set_postfix(post, refresh=True)
        if bar.disable and (info["step"] % cfg.val_every == 0 or info["step"] == cfg.steps):  # no TTY: log lines
            print(f"step {info['step']}/{cfg.steps} " + " ".join(f"{k} {v}" for k, v in post.items()),
                  file=sys.stderr, flush=True)

    trainer = Trainer(cfg, data, args.out, progress=progress, progress_seconds=0.5, dist=ctx)
    if not ctx.is_main:
        trainer.run(resume=args.resume)
        return None
    procs = f" in {ctx.world_size} processes" if ctx.active else ""
    if data.val_against is not None:  # held out of noisy data (n2n_core.data.datasets): no clean image to compare with
        what = "pairs" if isinstance(data.train, NoisyPairs) else "photos"
        held = (f"{len(data.val)} held-out {what} for validation (PSNR of the output against {data.val_against})"
                if data.val else "no validation (under 5 photos or pairs: none held out)")
    else:
        held = f"{len(data.val)} validation images"
    print(f"training {cfg.arch} ({cfg.method}) on {data.train.describe()}, {held}{procs}", file=sys.stderr)
    bar = _progress_bar(cfg.steps, f"train {cfg.arch}")
    if not args.resume and trainer.checkpoint_path.exists():
        trainer.checkpoint_path.unlink()  # the other ranks look for it only after run()'s first barrier
    try:
        result = trainer.run(resume=args.resume)
    finally:
        bar.close()
    write_card(Path(args.out), trainer)
    last = result.history[-1] if result.history else {}
    return {"status": result.status, "steps": result.step, "weights": result.weights,
            "seconds": round(result.seconds, 1), "val_psnr": last.get("val_psnr")}


# ----------------------------------------------------------------------------- eval


def cmd_eval(args: argparse.Namespace) -> int:
    from n2n_core.data.datasets import open_validation
    from n2n_core.training.evaluate import evaluate
    from n2n_core.data.noise import parse_noise

    model, _, path = _load_model(args.weights, args.device)
    pairs = open_validation(args.data, parse_noise(args.noise), seed=args.seed, limit=args.limit)
    if not pairs:
        raise ValueError(f"no evaluation images in {args.data!r}")
    res = evaluate(model, pairs, precision=args.precision)
    res.update({"weights": str(path), "data": args.data, "noise": args.noise, "protocol": "8-bit noisy input"})
    if args.json:
        print(json.dumps({k: v for k, v in res.items() if k != "per_image" or args.per_image}, indent=2))
    else:
        print(f"{res['images']} images  noisy {res['noisy_psnr']:.2f} dB  ->  denoised PSNR {res['psnr']:.2f} dB"
              f"  SSIM {res['ssim']:.4f}  ({res['seconds']:.2f} s/image, {res['precision']})")
    return 0


# ----------------------------------------------------------------------------- denoise


def denoise_inputs(specs: list[str]) -> list[Path]:
    """Files, folders (their images, sorted) and glob patterns -> the photo files, in order, each once."""
    import glob

    from n2n_core.data.datasets import list_images
    from n2n_core.data.images import PHOTO_SUFFIXES

    out: list[Path] = []
    for spec in specs:
        path = Path(spec)
        if path.is_dir():
            found = list_images(path, PHOTO_SUFFIXES)
            if not found:
                raise ValueError(f"{spec}: the folder holds no images (png, jpg, tif, webp, bmp, heic, avif or "
                                 "camera RAW: dng, cr2, cr3, nef, arw, raf, orf, rw2, ...)")
        elif path.is_file():
            found = [path]
        elif glob.has_magic(spec):
            found = sorted(Path(m) for m in glob.glob(spec) if Path(m).is_file())
            if not found:
                raise ValueError(f"{spec}: no file matches")
        else:
            raise ValueError(f"no such file or folder: {spec}")
        out.extend(f for f in found if f not in out)
    return out


def _denoise_models(weights: str | None, device: str) -> Callable[[str], Any]:
    """model_for(input format): the model ``--weights`` names for every photo; without it, the shipped
    default, and for a camera RAW the camera-noise model (``blind``, when shipped). Each is loaded once,
    when a photo first needs it."""
    from n2n_core.data.raw import CAMERA_NOISE_MODEL, FORMATS
    from n2n_core.weights import shipped

    loaded: dict[str | None, Any] = {}

    def model_for(input_format: str) -> Any:
        spec = weights
        if spec is None and input_format in FORMATS and CAMERA_NOISE_MODEL in shipped():
            spec = CAMERA_NOISE_MODEL
        if spec not in loaded:
            loaded[spec] = _load_model(spec, device)[0]
        return loaded[spec]

    return model_for


def cmd_denoise(args: argparse.Namespace) -> int:
    """Photos one at a time (memory bounded by the largest, not by their number). Every header is read
    first; a photo that cannot be read or denoised is reported by name and skipped, the others are
    written, and the exit code is 1 when any failed. A camera RAW is developed (``n2n_core.data.raw``), denoised
    by the camera-noise model unless ``--weights`` names one, and written as a 16-bit TIFF unless
    ``--format`` names another format."""
    import time
    import warnings

    from n2n_core.data import images
    from n2n_core.inference.infer import check_strength, picture_steps, run_steps
    from n2n_core.data.noise_level import estimate_sigma
    from n2n_core.inference.precision import device_of, model_precision, resolve_precision
    from n2n_core.data.raw import quiet_libraw

    warnings.simplefilter("ignore")  # e.g. Pillow's "Corrupt EXIF data": the one error line must stay alone
    check_strength(args.strength)
    if args.quality is not None and not 1 <= args.quality <= 100:
        raise ValueError(f"--quality must be between 1 and 100, got {args.quality}")
    if "/" in args.suffix or "\\" in args.suffix:
        raise ValueError(f"--suffix {args.suffix!r} holds a path separator; give a plain name part, e.g. -denoised")
    if args.bits == 16 and args.format not in (None, "png", "tiff"):
        raise ValueError(f"--bits 16 needs --format png or tiff; {args.format} holds 8 bits a sample")
    out_dir = Path(args.output_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"--output-dir {out_dir} is a file; name a folder (it is created when missing)")
    inputs = denoise_inputs(args.inputs)
    failed: dict[Path, str] = {}
    outputs: dict[Path, str] = {}  # input -> output format (--format, else the input's default)
    input_formats: dict[Path, str] = {}
    for p in inputs:  # report unreadable headers before any work
        with open(p, "rb") as f:
            try:
                with quiet_libraw():
                    input_formats[p] = images.probe(f, name=p.name)[0]
                outputs[p] = args.format or images.default_output_format(input_formats[p])
                if args.bits == 16 and images.OUTPUT_FORMATS[outputs[p]] not in images.DEEP_FORMATS:
                    outputs[p] = "png"  # no --format: --bits 16 of a JPEG (WebP, HEIC, AVIF) is a 16-bit PNG
            except images.ImageError as e:
                failed[p] = str(e)
                outputs[p] = args.format or "png"
                print(f"n2n: error: {p}: {e}", file=sys.stderr)
    names = [images.output_name(p.name, outputs[p], args.suffix) for p in inputs]
    clash = sorted({n for n in names if names.count(n) > 1})
    if clash:
        raise ValueError(f"several inputs would write the same output {clash[0]}; rename them or run them apart")
    own = next((p for p, n in zip(inputs, names) if (out_dir / n).resolve() == p.resolve()), None)
    if own is not None:
        raise ValueError(f"the output of {own} would overwrite it; give --suffix (e.g. -denoised) or another "
                         "--output-dir")
    todo = [p for p in inputs if p not in failed]
    skipped = [p for p in todo if args.skip_existing and (out_dir / images.output_name(p.name, outputs[p],
                                                                                       args.suffix)).exists()]
    for p in skipped if not args.quiet else []:
        print(f"n2n: {p}: skipped, {out_dir / images.output_name(p.name, outputs[p], args.suffix)} exists "
              "(--skip-existing)", file=sys.stderr)
    todo = [p for p in todo if p not in skipped]
    model_for = _denoise_models(args.weights, args.device)
    model = model_for(input_formats[todo[0]]) if todo else None  # a bad --weights fails before any work
    precision = resolve_precision(args.precision, device_of(model)) if model is not None else "float32"
    out_dir.mkdir(parents=True, exist_ok=True)
    bars = not args.quiet and show_progress(args.progress, sys.stderr)
    bar = _progress_bar(len(todo), "denoise", unit="img", enabled=bars and len(todo) > 1)
    started, megapixels = time.monotonic(), 0.0
    for p in todo:
        dst = out_dir / images.output_name(p.name, outputs[p], args.suffix)
        photo_bar = PhotoProgress(p.name, bars)
        try:
            model = model_for(input_formats[p])
            with quiet_libraw():  # LibRaw's own stderr lines about a damaged RAW: ours says it in one
                picture = images.read(p)
            sigma = estimate_sigma(picture.pixels)
            pixels = picture.pixels.shape[-2] * picture.pixels.shape[-1]
            photo_bar.start(pixels)
            steps = picture_steps(model, picture, tile=args.tile, strength=args.strength, precision=precision)
            del picture
            out = run_steps(steps, progress=photo_bar.step)
            images.write(dst, out, quality=args.quality, bits=args.bits, strip_metadata=args.strip_metadata)
            del out
        except (images.ImageError, ValueError) as e:
            failed[p] = str(e)
            bar.write(f"n2n: error: {p}: {e}", file=sys.stderr)
            continue
        finally:
            photo_bar.close()
        megapixels += pixels / 1e6
        bar.update(1)
        bar.write(f"{dst}  (estimated noise sigma {sigma:.1f})", file=sys.stdout)
    bar.close()
    if failed and len(inputs) > 1:
        print(f"n2n: error: {len(failed)} of {len(inputs)} photos failed and were skipped: "
              f"{', '.join(p.name for p in failed)}", file=sys.stderr)
    elif not failed and todo and not args.quiet:
        print(denoise_summary(len(todo), megapixels, time.monotonic() - started, out_dir,
                              model_precision(model, precision), len(skipped)), file=sys.stderr)
    elif not failed and skipped and not args.quiet:
        print(f"n2n: nothing to do: all {len(skipped)} outputs already exist in {out_dir} (--skip-existing)",
              file=sys.stderr)
    return 1 if failed else 0


# ----------------------------------------------------------------------------- export


def cmd_export(args: argparse.Namespace) -> int:
    """Write MODEL (a shipped name or a weights file, as --weights takes it) as ONNX, its card in the metadata;
    one summary line on stdout."""
    from n2n_core.training.card import card_beside
    from n2n_core.inference.export import export_onnx
    from n2n_core.models import arch_of, size_multiple

    out = Path(args.output)
    if out.is_dir():
        raise ValueError(f"{out} is a folder; name the ONNX file to write, e.g. {out / 'model.onnx'}")
    model, meta, path = _load_model(args.model, "cpu")
    card = card_beside(path) or {"name": path.stem, "architecture": arch_of(model.config()) or model.config()["type"],
                                 "metadata": meta}
    whole_image = not args.network_only
    export_onnx(model, out, opset=args.opset, metadata=card, whole_image=whole_image)
    channels = next((m.in_channels for m in model.modules() if hasattr(m, "in_channels")), "C")
    sides = "any height and width" if whole_image else f"height and width multiples of {size_multiple(model)}"
    print(f"n2n: exported {args.model} to {out}: ONNX opset {args.opset}, input 'input' float32 "
          f"[batch, {channels}, height, width] ({sides}), output 'output', {out.stat().st_size / 1e6:.1f} MB")
    return 0


# ----------------------------------------------------------------------------- serve


def cmd_serve(args: argparse.Namespace) -> int:
    import importlib
    import os

    import uvicorn

    if args.weights:
        os.environ["N2N_WEIGHTS"] = args.weights
    error = importlib.import_module("app.jobs.cli").store_error()  # by name: see cmd_worker
    if error:
        raise ValueError(error)
    uvicorn.run("app.main:app", host=args.host, port=args.port, log_level=args.log_level)
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    """The service's training worker. n2n_core never imports the service: the module is reached by name,
    as `serve` reaches "app.main:app", so the framework stays usable without app/."""
    import importlib

    return int(importlib.import_module("app.jobs.cli").main([]))


# ----------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="n2n",
                                description="Noise2Noise denoising: train, evaluate, denoise, export, serve.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    t = sub.add_parser("train", help="train a denoiser on noisy pairs or single noisy photos",
                       description="Train a denoiser from noisy data alone: Noise2Noise (noisy pairs, or clean "
                       "images plus a noise model) or Neighbor2Neighbor (single noisy photos).")
    t.add_argument("--data", default="builtin", help="builtin | folder of clean images | folder with A/ and B/ | "
                   "course .pkl/.pt (default: builtin); with --method neighbor2neighbor: a folder of single noisy "
                   "photos, or builtin")
    t.add_argument("--method", default="noise2noise", choices=METHOD_CHOICES,
                   help="noise2noise (default): pairs of noisy shots, or clean images plus --noise; "
                   "neighbor2neighbor: one noisy photo of each scene, no pairs and no clean images")
    t.add_argument("--gamma", type=float, default=None,
                   help="neighbor2neighbor: final weight of the regulariser, ramped up from 0 (default: 2)")
    t.add_argument("--cell", type=int, default=None,
                   help="neighbor2neighbor: side of the sub-sampling cell, even (default: 2, neighbouring pixels; "
                   "4 takes pixels 2 apart, against noise correlated between neighbours, e.g. JPEG or demosaicing)")
    t.add_argument("--val", default=None, help="validation data: folder of clean images, builtin, or a course "
                   ".pkl/.pt of (noisy, clean)")
    t.add_argument("--noise", default="gaussian:25", help="gaussian:25 | gaussian:0-50 | poisson:30 | impulse:0.2 | "
                   "poisson-gaussian:0.04,25 (camera noise, per-channel levels) | several joined by + (a mixture)")
    t.add_argument("--jpeg", default=None, metavar="LO-HI",
                   help="save half the training inputs as JPEG of a quality in LO..HI, e.g. 70-95 (targets stay "
                   "uncompressed)")
    t.add_argument("--arch", default=None, help="architecture: seed, tiny, fast, unet-s, unet-m, unet-l, unet, n2n-unet "
                   "(default: that of --init, else fast, as for POST /train: quick to train on a CPU; unet-m or "
                   "unet-l for the best quality)")
    t.add_argument("--init", default=None, metavar="WEIGHTS",
                   help="fine-tune: start from these weights (a file or a shipped name such as default)")
    t.add_argument("--steps", type=int, default=10_000)
    t.add_argument("--batch-size", type=int, default=None,
                   help="patches a step (default: n2n_core.training.train.TrainConfig's, 16, shared with POST /train)")
    t.add_argument("--patch-size", type=int, default=None,
                   help="side of the training patches (default: TrainConfig's, 64, shared with POST /train)")
    t.add_argument("--lr", type=float, default=None, help="learning rate (default: TrainConfig's, 1e-3, shared "
                   "with POST /train)")
    t.add_argument("--optimizer", default="adam", choices=["adam", "sgd"])
    t.add_argument("--schedule", default="cosine-tail", choices=["cosine-tail", "cosine", "constant"])
    t.add_argument("--warmup", type=int, default=0, help="linear learning-rate warm-up steps")
    t.add_argument("--ema", type=float, default=0.0,
                   help="write an exponential moving average of the weights with this decay, e.g. 0.999 (0: off)")
    t.add_argument("--seed", type=int, default=None, help="default: TrainConfig's, 0, shared with POST /train")
    t.add_argument("--device", default="auto", help="auto | cpu | cuda")
    t.add_argument("--val-every", type=int, default=500)
    t.add_argument("--checkpoint-every", type=int, default=500)
    t.add_argument("--nproc-per-node", type=int, default=1, metavar="N",
                   help="data-parallel training in N local processes (gloo on CPU, NCCL with one GPU each on "
                   "CUDA); --batch-size stays the global batch. `n2n train` also runs under torchrun")
    t.add_argument("--no-resume", dest="resume", action="store_false", help="ignore an existing checkpoint")
    t.add_argument("--out", required=True, help="weights file to write, e.g. weights/mine.safetensors")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("eval", help="PSNR and SSIM on clean images with synthetic noise",
                       description="Add noise (8-bit, fixed seed) to clean images, denoise, report PSNR and SSIM.")
    e.add_argument("--data", required=True, help="folder of clean images | builtin | course .pkl/.pt (noisy, clean)")
    e.add_argument("--noise", default="gaussian:25")
    e.add_argument("--weights", default=None, help="weights file or shipped model name (default: the default model)")
    e.add_argument("--limit", type=int, default=None, help="evaluate on the first N images only")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--device", default="auto")
    e.add_argument("--precision", default=None, choices=PRECISION_CHOICES, help=PRECISION_HELP)
    e.add_argument("--json", action="store_true", help="print JSON")
    e.add_argument("--per-image", action="store_true", help="with --json, include per-image figures")
    e.set_defaults(func=cmd_eval)

    d = sub.add_parser("denoise", help="denoise image files into a folder",
                       description="Denoise images (PNG/JPEG/TIFF/WebP/BMP, HEIC/AVIF; grey, RGB, RGBA, 16-bit) and "
                       "camera RAW files (DNG, CR2, CR3, NEF, ARW, RAF, ORF, RW2, ...) to DIR/<stem><suffix>.<ext>, "
                       "in the input's own format (a JPEG stays JPEG at its quality, a TIFF TIFF; a RAW: a 16-bit "
                       "TIFF; a BMP: PNG) unless --format names another.")
    d.add_argument("inputs", nargs="+", metavar="IN",
                   help="photo files, folders (their images) or glob patterns such as 'shots/*.jpg'")
    d.add_argument("--output-dir", "-o", required=True, metavar="DIR",
                   help="folder for the results, DIR/<stem><suffix>.<ext> (created when missing); <ext> is the "
                   "input's own when the format is its own (IMG_1000.JPG -> IMG_1000.JPG), else the format's")
    d.add_argument("--suffix", default="", metavar="TEXT",
                   help="added to each output's name, e.g. --suffix -denoised: IMG_1000.jpg -> "
                   "IMG_1000-denoised.jpg (default: none)")
    d.add_argument("--skip-existing", action="store_true",
                   help="leave out the photos whose output already exists (a rerun after Ctrl-C goes on where it "
                   "stopped); the summary says how many were skipped")
    d.add_argument("--weights", default=None,
                   help="a shipped model (default, best, blind, fast) or a weights file (default: default; for a "
                   "camera RAW, the camera-noise model blind)")
    d.add_argument("--format", default=None, choices=["png", "jpeg", "webp", "tiff", "heic", "avif"],
                   help="output format (png and tiff keep 16 bits, heic 10); every format keeps the EXIF and ICC "
                   "profile (default: the input's own format; a 16-bit tiff for a camera RAW, png for a BMP)")
    d.add_argument("--quality", type=int, default=None,
                   help="JPEG, WebP, HEIC and AVIF quality, 1..100 (default: a JPEG's own quality, estimated from "
                   "its quantisation tables, when it is written as JPEG; else 95)")
    d.add_argument("--bits", type=int, default=None, choices=[8, 16],
                   help="bits a sample: 16 for a 16-bit png or tiff from any input (default: a 16-bit input stays "
                   "16-bit as png or tiff, anything else is 8-bit)")
    d.add_argument("--strip-metadata", action="store_true",
                   help="leave the EXIF (camera, dates, GPS, ...) out of the outputs; the ICC profile is kept")
    d.add_argument("--device", default="auto")
    d.add_argument("--tile", type=int, default=None,
                   help="override: tiles of about TILE x TILE pixels (default: sized from a memory budget)")
    shown = d.add_mutually_exclusive_group()
    shown.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                       help="progress bars on stderr: one over the photos, and one for each photo of 1 megapixel "
                       "or more or of several tiles (default: only when stderr is a terminal)")
    shown.add_argument("-q", "--quiet", action="store_true",
                       help="no progress bars and no summary line on stderr; the lines naming the files written "
                       "(stdout) and the errors stay")
    d.add_argument("--precision", default=None, choices=PRECISION_CHOICES, help=PRECISION_HELP)
    d.add_argument("--strength", type=float, default=1.0,
                   help="how much to denoise, 0..1: 1 the model's output (default), 0 the input, between a blend")
    d.set_defaults(func=cmd_denoise)

    x = sub.add_parser("export", help="export a model to ONNX",
                       description="Write a model as an ONNX file (float32, dynamic batch, height and width; the "
                       "model card in its metadata), for onnxruntime, OpenVINO, TensorRT and the like.")
    x.add_argument("model", metavar="MODEL",
                   help="a shipped model (default, best, blind, fast, seed) or a weights file, as --weights takes it")
    x.add_argument("output", metavar="OUT.onnx", help="the ONNX file to write")
    x.add_argument("--opset", type=int, default=17, help="ONNX opset (default: 17)")
    x.add_argument("--network-only", action="store_true",
                   help="the network alone: height and width must be multiples of the model's size multiple and the "
                   "output is not clamped (default: the whole-image graph, which pads any size as n2n denoise does, "
                   "crops back and clamps to [0, 1])")
    x.set_defaults(func=cmd_export)

    s = sub.add_parser("serve", help="start the HTTP service", description="Start the n2n REST service.")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--weights", default=None, help="model to load at start (default: the shipped default)")
    s.add_argument("--log-level", default="info")
    s.set_defaults(func=cmd_serve)

    w = sub.add_parser("worker", help="run the service's training jobs until stopped",
                       description="Run training jobs from the configured store (N2N_DATABASE_URL, N2N_DATA_DIR, "
                       "N2N_DEVICE) until SIGTERM, which checkpoints the running job and hands it back to the queue. "
                       "Start as many as you like, on any host that sees the database and the data directory.")
    w.set_defaults(func=cmd_worker)
    return p


def _joined_suffix(argv: list[str]) -> list[str]:
    """``--suffix -denoised`` as ``--suffix=-denoised``: argparse would take a value that starts with ``-``
    for an option."""
    out, i = [], 0
    while i < len(argv):
        if argv[i] == "--suffix" and i + 1 < len(argv) and argv[i + 1].startswith("-") and argv[i + 1] != "--":
            out.append(f"--suffix={argv[i + 1]}")
            i += 2
        else:
            out.append(argv[i])
            i += 1
    return out


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(_joined_suffix(list(sys.argv[1:] if argv is None else argv)))
    from n2n_core.inference.runtime import tune_allocator

    tune_allocator()
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("n2n: interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError) as e:
        print(f"n2n: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
