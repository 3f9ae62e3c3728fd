"""Engines, side by side: the same weights and inputs through n2n_core and the engines a user would compare.

    python benchmarks/engines.py [--model default] [--sizes 512,2048] [--repeats 7] [--threads 2] [--busy-core]

Engines (each skipped with its reason when its package is missing; `pip install -e ".[bench]"`):
  n2n_core        the model call, and ``n2n_core.denoise`` (padding, row streams, clamping), in float32
                  and bfloat16 (``precision=``)
  torch.nn        the architecture rebuilt in torch.nn with the same weights (tests/core/mirror.py): float32
                  NCHW, float32 channels-last, bfloat16 autocast channels-last (U-Nets and the seed network)
  ONNX Runtime    the network exported by ``n2n export --network-only`` (n2n_core.inference.export), CPU provider,
                  float32
  OpenVINO        the same ONNX file on its CPU plugin, float32 and bfloat16 (inference precision hint)

One process, every engine on the same input, interleaved repeats, medians. For each: seconds, the ratio
to n2n_core.denoise in float32, GFLOP/s (the model's multiply-adds x 2, counted by torch's FlopCounterMode
on n2n_core's own GEMMs), the share of the matmul peak measured in the same run (torch.mm of 2048x2048,
float32 and bfloat16), and the largest difference from n2n_core's float32 output. ``--busy-core`` runs
every engine twice, quiet and with a second process spinning on one core (as a training job beside the
service does), and prints each engine's slowdown. Results: benchmarks/results/engines[_busy].json, with the
CPU's model and ISA flags.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "core"))

from benchmarks.common import interleaved, machine, median, save_results  # noqa: E402
from n2n_core.inference.infer import denoise  # noqa: E402
from n2n_core.inference.precision import at_precision, cpu_flags  # noqa: E402
from n2n_core.weights import load_with_metadata  # noqa: E402
from n2n_core.weights import resolve  # noqa: E402

ISA_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "amx_bf16", "amx_int8")
Engine = Callable[[torch.Tensor], torch.Tensor]  # (1, 3, H, W) float32 -> (1, 3, H, W) float32


def cpu_description() -> dict:
    """The CPU's model name and the ISA flags that decide these engines' kernels."""
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    flags = cpu_flags()
    return {"model": name, "cores": os.cpu_count(), "isa": {flag: flag in flags for flag in ISA_FLAGS}}


def matmul_peak(dtype: torch.dtype, repeats: int = 5) -> float:
    """GFLOP/s of torch.mm on 2048x2048 matrices of ``dtype`` (median of ``repeats``)."""
    a, b = torch.randn(2048, 2048).to(dtype), torch.randn(2048, 2048).to(dtype)
    a @ b
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t0)
    return 2 * 2048**3 / median(times) / 1e9


def flops_per_pixel(model) -> float:
    """Floating-point operations of one forward pass per input pixel (2 per multiply-add of every GEMM),
    counted on the bfloat16 form, whose convolutions are one im2col GEMM each (FlopCounterMode does not
    count the in-place accumulations of the float32 phase GEMMs)."""
    from torch.utils.flop_counter import FlopCounterMode

    probe = torch.rand(1, 3, 64, 64)
    with FlopCounterMode(display=False) as counter:
        at_precision(model, torch.bfloat16)(probe)
    return counter.get_total_flops() / probe[0, 0].numel()


def n2n_engines(model) -> dict[str, Engine]:
    reduced = at_precision(model, torch.bfloat16)
    return {
        "n2n_core.denoise float32": lambda x: denoise(model, x[0], precision="float32")[None],
        "n2n_core model(x) float32": lambda x: model(x),
        "n2n_core.denoise bfloat16": lambda x: denoise(model, x[0], precision="bfloat16")[None],
        "n2n_core model(x) bfloat16": lambda x: reduced(x),
    }


def torch_engines(model) -> tuple[dict[str, Engine], str | None]:
    try:
        from mirror import torch_mirror

        mirror = torch_mirror(model).eval()
    except (ImportError, KeyError) as e:
        return {}, f"torch.nn: no mirror of this architecture ({e})"
    channels_last = torch_mirror(model).eval().to(memory_format=torch.channels_last)

    def autocast(x: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return channels_last(x.contiguous(memory_format=torch.channels_last)).float()

    return {
        "torch.nn float32 NCHW": lambda x: mirror(x),
        "torch.nn float32 channels-last": lambda x: channels_last(x.contiguous(memory_format=torch.channels_last)),
        "torch.nn bfloat16 autocast channels-last": autocast,
    }, None


def onnx_engines(model, card: dict, threads: int, folder: Path) -> tuple[dict[str, Engine], list[str]]:
    from n2n_core.inference.export import export_onnx

    path = folder / "model.onnx"
    export_onnx(model, path, metadata=card, whole_image=False)  # the network alone, as model(x)
    engines: dict[str, Engine] = {}
    skipped = []
    try:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        engines[f"ONNX Runtime {ort.__version__} float32"] = (
            lambda x: torch.from_numpy(session.run(None, {"input": x.numpy()})[0]))
    except ImportError:
        skipped.append("ONNX Runtime: not installed (pip install -e '.[bench]')")
    try:
        import openvino as ov

        core = ov.Core()
        for hint, label in (("f32", "float32"), ("bf16", "bfloat16")):
            compiled = core.compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": hint,
                                                            "INFERENCE_NUM_THREADS": threads})
            request = compiled.create_infer_request()
            engines[f"OpenVINO {ov.__version__.split('-')[0]} {label}"] = (
                lambda x, r=request: torch.from_numpy(np.array(r.infer({0: x.numpy()})[0])))
    except ImportError:
        skipped.append("OpenVINO: not installed (pip install -e '.[bench]')")
    return engines, skipped


def spin_one_core() -> subprocess.Popen:
    """A process that keeps one core busy until its parent exits (or it is killed)."""
    code = ("import os, time\nparent = os.getppid()\nwhile os.getppid() == parent:\n"
            "    end = time.perf_counter() + 0.05\n    while time.perf_counter() < end:\n        pass\n")
    return subprocess.Popen([sys.executable, "-c", code])


def measure(engines: dict[str, Engine], x: torch.Tensor, repeats: int) -> dict[str, float]:
    for engine in engines.values():  # warm-up: allocations, compiled kernels
        engine(x)
    times = interleaved({name: (lambda e=engine: e(x)) for name, engine in engines.items()}, repeats,
                        torch.device("cpu"))
    return {name: median(samples) for name, samples in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="default", help="a shipped model or a weights file")
    ap.add_argument("--sizes", default="512,2048")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=0, help="threads of every engine (0: torch's default)")
    ap.add_argument("--busy-core", action="store_true", help="also measure with one core kept busy")
    ap.add_argument("--only", default=None, help="comma-separated substrings: engines to keep")
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    model, card = load_with_metadata(resolve(args.model))
    peaks = {"float32": matmul_peak(torch.float32), "bfloat16": matmul_peak(torch.bfloat16)}
    flops = flops_per_pixel(model)
    print(f"model {args.model}: {flops / 1e3:.0f} kFLOP per pixel; torch.mm 2048^2: float32 {peaks['float32']:.0f} "
          f"GFLOP/s, bfloat16 {peaks['bfloat16']:.0f} GFLOP/s; {threads} threads")
    engines = n2n_engines(model)
    reference_engines, reason = torch_engines(model)
    engines.update(reference_engines)
    skipped = [reason] if reason else []
    with tempfile.TemporaryDirectory() as folder:
        onnx, missing = onnx_engines(model, card if isinstance(card, dict) else {}, threads, Path(folder))
        engines.update(onnx)
        skipped += missing
        if args.only:
            keep = [s.strip() for s in args.only.split(",")]
            engines = {k: v for k, v in engines.items() if k == "n2n_core.denoise float32" or any(s in k for s in keep)}
        for line in skipped:
            print(f"skipped: {line}")
        results = {"machine": {**machine(), "cpu_detail": cpu_description()}, "model": args.model,
                   "kflop_per_pixel": flops / 1e3, "matmul_peak_gflops": peaks, "threads": threads,
                   "repeats": args.repeats, "skipped": skipped, "sizes": {}}
        spinner = None
        try:
            for size in (int(s) for s in args.sizes.split(",")):
                torch.manual_seed(0)
                x = torch.rand(1, 3, size, size)
                reference = engines["n2n_core.denoise float32"](x)
                differences = {name: float((engine(x).clamp(0, 1) - reference).abs().max())
                               for name, engine in engines.items()}
                quiet = measure(engines, x, args.repeats)
                busy = None
                if args.busy_core:
                    spinner = spin_one_core()
                    busy = measure(engines, x, args.repeats)
                    spinner.kill()
                    spinner.wait()
                    spinner = None
                results["sizes"][str(size)] = report(size, engines, quiet, busy, differences, flops, peaks)
        finally:
            if spinner is not None:
                spinner.kill()
    name = "engines_busy" if args.busy_core else "engines"
    print(f"saved {save_results(name, results)}")


def report(size: int, engines: dict[str, Engine], quiet: dict[str, float], busy: dict[str, float] | None,
           differences: dict[str, float], flops: float, peaks: dict[str, float]) -> dict:
    base = quiet["n2n_core.denoise float32"]
    print(f"\n{size}x{size}" + ("  (quiet | one core busy)" if busy else ""))
    header = f"{'engine':44s} {'seconds':>8s} {'ratio':>6s} {'GFLOP/s':>8s} {'peak':>5s} {'max diff':>9s}"
    print(header + ("   busy s  slowdown" if busy else ""))
    rows = {}
    for name in engines:
        seconds = quiet[name]
        gflops = flops * size * size / seconds / 1e9
        peak = peaks["bfloat16" if "bfloat16" in name else "float32"]
        row = {"seconds": seconds, "ratio_to_n2n_core_denoise_float32": seconds / base, "gflops": gflops,
               "share_of_matmul_peak": gflops / peak, "max_abs_difference": differences[name]}
        line = (f"{name:44s} {seconds:8.3f} {seconds / base:6.2f} {gflops:8.0f} {gflops / peak:5.0%} "
                f"{differences[name]:9.2e}")
        if busy:
            row.update({"busy_seconds": busy[name], "slowdown": busy[name] / seconds})
            line += f" {busy[name]:8.3f} {busy[name] / seconds:8.2f}x"
        rows[name] = row
        print(line)
    return rows


if __name__ == "__main__":
    main()
