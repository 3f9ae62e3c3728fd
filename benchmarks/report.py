"""Print the README's benchmark and performance tables from benchmarks/results/*.json.

    python benchmarks/report.py > /tmp/tables.md
"""

from __future__ import annotations

import json
from pathlib import Path

R = Path(__file__).resolve().parent / "results"


def load(name: str) -> dict | None:
    p = R / f"{name}.json"
    return json.loads(p.read_text()) if p.exists() else None


def denoisers_table() -> str:
    rows = ["| method | CBSD68 σ=25, 8-bit input: PSNR (dB) | seconds / image (this 2-core CPU) | trained on |",
            "|---|---|---|---|"]
    base = load("baselines_CBSD68_sigma25")
    names = {"noisy": "noisy input", "opencv_nlm": "OpenCV fastNlMeansDenoisingColored (h=15)",
             "skimage_nlm": "scikit-image denoise_nl_means", "bm3d": "BM3D (`bm3d_rgb`, σ known)"}
    if base:
        for k, label in names.items():
            s = base.get("summary", {}).get(k)
            if s:
                rows.append(f"| {label} | {s['psnr']:.2f} ({s['images']} images) | {s['seconds_per_image']:.2f} | — |")
    for w in ("seed", "default", "fast", "blind"):
        e = load(f"eval_{w}_CBSD68_gaussian25_8-bit")
        if e:
            rows.append(f"| n2n `{w}` | **{e['psnr']:.2f}** (SSIM {e['ssim']:.3f}) | {e['seconds']:.2f} | noisy pairs "
                        "only (CBSD432) |")
    return "\n".join(rows)


NOISES = (("gaussian15", 15), ("gaussian25", 25), ("gaussian50", 50), ("poisson30", None))


def noise_levels_table(data: str = "CBSD68") -> str:
    """Each model and BM3D at every noise level, on the same 8-bit noisy images per column."""
    head = " | ".join({"gaussian15": "σ=15", "gaussian25": "σ=25", "gaussian50": "σ=50",
                       "poisson30": "Poisson, 30 photons"}[n] for n, _ in NOISES)
    rows = [f"| {data}, 8-bit noisy input | {head} |", "|---|" + "---|" * len(NOISES)]
    noisy = [load(f"eval_blind_{data}_{n}_8-bit") or load(f"eval_default_{data}_{n}_8-bit") for n, _ in NOISES]
    rows.append("| noisy input | " + " | ".join(f"{e['noisy_psnr']:.2f}" if e else "—" for e in noisy) + " |")
    for method, label in (("opencv_nlm", "OpenCV NLM (h=0.6σ, σ given)"),
                          ("skimage_nlm", "scikit-image NLM (σ given)"), ("bm3d", "BM3D (σ given)")):
        cells = []
        for _, sigma in NOISES:
            b = load(f"baselines_{data}_sigma{sigma}") if sigma else None
            s = b and b.get("summary", {}).get(method)
            cells.append(f"{s['psnr']:.2f}" + (f" ({s['images']} images)" if data == "CBSD68" and s["images"] != 68
                                                else "") if s else "—")
        rows.append(f"| {label} | " + " | ".join(cells) + " |")
    for w, label in (("default", "n2n `default` (trained at σ=25)"), ("blind", "n2n `blind` (trained at σ 0–50)")):
        es = [load(f"eval_{w}_{data}_{n}_8-bit") for n, _ in NOISES]
        rows.append(f"| {label} | " + " | ".join(f"{e['psnr']:.2f}" if e else "—" for e in es) + " |")
    return "\n".join(rows)


def parity_table(arch: str = "unet-s") -> str:
    st = load(f"parity_{arch}")
    if not st:
        return ""
    rows = [f"| {arch}, {st['steps']} steps, CBSD68 σ=25 (8-bit) | mean ± std over seeds | runs | train seconds |",
            "|---|---|---|---|"]
    for k, v in st["results"].items():
        rows.append(f"| {k} | {v['mean']:.2f} ± {v['std']:.2f} dB | {', '.join(f'{x:.2f}' for x in v['runs'])} | "
                    f"{', '.join(f'{x:.0f}' for x in v['train_seconds'])} |")
    return "\n".join(rows)


def main() -> None:
    print(denoisers_table())
    print()
    print(noise_levels_table())
    print()
    print(parity_table())
    print()
    for w in ("default", "seed"):
        for proto in ("8-bit", "float"):
            for data in ("CBSD68", "skimage"):
                e = load(f"eval_{w}_{data}_gaussian25_{proto}")
                if e:
                    print(f"- `{w}` on {data} ({e['images']} images), σ=25, {proto}: noisy {e['noisy_psnr']:.2f} → "
                          f"{e['psnr']:.2f} dB, SSIM {e['ssim']:.4f}; 512×512 in {e['seconds_512']:.2f} s "
                          f"(`{e['command']}`)")
    st = load("seed_table")
    if st:
        print()
        print("| seed architecture, CBSD68 σ=25 (8-bit) | mean ± std over seeds | runs |")
        print("|---|---|---|")
        for k, v in st["results"].items():
            print(f"| {k} | {v['mean']:.2f} ± {v['std']:.2f} dB | {', '.join(f'{x:.2f}' for x in v['runs'])} |")
    cs = load("core_speed_cpu")
    if cs:
        print()
        for k in ("train_step_b64_32x32", "inference_512x512"):
            v = cs[k]
            print(f"- {k}: n2n_core {v['n2n_core_ms']:.1f} ms, torch.nn {v['torch_nn_ms']:.1f} ms, ratio {v['ratio']:.2f}")
    ld = load("load")
    if ld:
        print()
        for size, v in ld["results"].items():
            print(f"- {size}: {v['images_per_second']:.2f} images/s, p50 {v['p50_seconds']:.2f} s, p99 "
                  f"{v['p99_seconds']:.2f} s, codes {v['status_codes']}")
        print(f"- server peak memory {ld['server_peak_resident_bytes'] / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
