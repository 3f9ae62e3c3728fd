"""Figures for the README: before/after crops of real noisy photographs (RNI15), the same crops by
each shipped model side by side (so that people can choose), and a screenshot of the web page.

    python benchmarks/figures.py [--weights weights/default.safetensors] [--only crops|compare|page]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import free_port, start_server, stop_server  # noqa: E402
from n2n_core.inference.infer import denoise  # noqa: E402
from n2n_core.weights import load  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RNI = ROOT.parent / "shared" / "data" / "RNI15"
DOCS = ROOT / "docs"


def before_after(model, name: str, box: tuple[int, int, int, int], scale: int = 2) -> Image.Image:
    """noisy | denoised, a crop of each magnified ``scale`` times (nearest), with labels."""
    noisy = Image.open(RNI / name).convert("RGB")
    clean = denoise(model, noisy)
    crops = [im.crop(box).resize(((box[2] - box[0]) * scale, (box[3] - box[1]) * scale), Image.NEAREST)
             for im in (noisy, clean)]
    w, h = crops[0].size
    out = Image.new("RGB", (2 * w + 8, h + 24), "white")
    for i, (im, label) in enumerate(zip(crops, ("noisy input (RNI15)", "n2n denoised"))):
        out.paste(im, (i * (w + 8), 24))
        ImageDraw.Draw(out).text((i * (w + 8) + 4, 6), f"{label}: {name}", fill="black")
    return out


COMPARED = ("default", "blind", "best")
#: RNI15 photos and crops (left, top, right, bottom) for the comparison: a face with light noise, strong
#: colour noise in the dark, and fine detail under noise.
COMPARE_CROPS = {"Audrey_Hepburn.jpg": (230, 60, 430, 230), "Movie.png": (120, 60, 320, 230),
                 "Bears.png": (140, 100, 340, 270), "Flowers.png": (40, 40, 240, 210)}


def side_by_side(models: dict[str, object], name: str, box: tuple[int, int, int, int], scale: int = 2) -> Image.Image:
    """noisy | one column per model: the same crop of an RNI15 photo, magnified ``scale`` times (nearest)."""
    noisy = Image.open(RNI / name).convert("RGB")
    panels = [("noisy input", noisy)] + [(label, denoise(model, noisy)) for label, model in models.items()]
    crops = [(label, im.crop(box).resize(((box[2] - box[0]) * scale, (box[3] - box[1]) * scale), Image.NEAREST))
             for label, im in panels]
    w, h = crops[0][1].size
    out = Image.new("RGB", (len(crops) * (w + 8) - 8, h + 24), "white")
    for i, (label, im) in enumerate(crops):
        out.paste(im, (i * (w + 8), 24))
        ImageDraw.Draw(out).text((i * (w + 8) + 4, 6), f"{label}: {name}" if i == 0 else label, fill="black")
    return out


def screenshot(photo: Path, path: Path) -> None:
    from playwright.sync_api import sync_playwright

    port = free_port()
    proc = start_server(Path(tempfile.mkdtemp(prefix="n2n-fig-")), port)
    try:
        with sync_playwright() as p:
            b = p.chromium.launch(executable_path="/usr/bin/chromium", args=[
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run"])
            page = b.new_page(viewport={"width": 1100, "height": 900})
            page.goto(f"http://127.0.0.1:{port}")
            page.locator("input[type=file]").first.set_input_files(str(photo))
            page.wait_for_function("document.getElementById('status').innerText.startsWith('Done')", timeout=300_000)
            page.select_option("#zoom", "2")
            page.evaluate("document.getElementById('stage').scrollTo(220, 140)")
            page.screenshot(path=str(path), full_page=False)
            b.close()
    finally:
        stop_server(proc)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--weights", default=str(ROOT / "weights" / "default.safetensors"))
    ap.add_argument("--only", choices=["crops", "compare", "page"], default=None)
    args = ap.parse_args()
    DOCS.mkdir(exist_ok=True)
    if args.only in (None, "crops"):
        model = load(args.weights)
        before_after(model, "Dog.png", (110, 90, 350, 290)).save(DOCS / "before_after_dog.png")
        before_after(model, "Audrey_Hepburn.jpg", (230, 60, 470, 260)).save(DOCS / "before_after_audrey.png")
    if args.only in (None, "compare"):
        models = {name: load(ROOT / "weights" / f"{name}.safetensors") for name in COMPARED}
        for photo, box in COMPARE_CROPS.items():
            side_by_side(models, photo, box).save(DOCS / f"models_{Path(photo).stem.lower()}.png")
    if args.only in (None, "page"):
        screenshot(RNI / "Dog.png", DOCS / "page.png")
    print("wrote", *sorted(p.name for p in DOCS.glob("*.png")))


if __name__ == "__main__":
    main()
