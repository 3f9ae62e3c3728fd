"""Training data: sources of Noise2Noise pairs or single noisy photos, and the background batch loader.

Sources (``open_dataset``), for Noise2Noise:
  (a) a folder of clean images + a noise model: two independent draws on the same patch;
  (b) a folder with ``A/`` and ``B/`` of noisy pairs with matching file names;
  (c) the course format: a ``.pkl``/``.pt`` tuple (noisy, noisy) of uint8 N x 3 x H x W tensors;
  (d) ``builtin``: the colour photographs scikit-image ships (works on a fresh machine).
For Neighbor2Neighbor (``singles=True``):
  (e) a folder of noisy photos, each used alone (one shot of each scene, no clean image);
  (f) ``builtin``: scikit-image's photographs, each with one fixed noise draw saved as 8-bit.

Batch ``i`` is drawn from a generator seeded with (seed, i) alone, so a run resumed at step i
sees exactly the batches it would have seen, whatever thread made them.

Memory stays bounded for folders of large images: images are decoded one at a time, in strips of
rows, and once ``MEMORY_BUDGET`` bytes of decoded pixels are held in RAM the rest go to one
unlinked temporary file that is memory-mapped back, so a batch reads only the pages of its crops
(clean, file-backed pages the kernel can drop, not the worker's heap). Images held out of a folder
for validation are centre-cropped to ``VAL_MAX_SIDE``.
"""

from __future__ import annotations

import pickle
import queue
import tempfile
import threading
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from n2n_core.nn.functional.neighbor import neighbour_indices, subsample
from n2n_core.data.noise import Gaussian, JpegInputs, NoiseModel, jpeg_compress, quantize8

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp"}
BUILTIN_TRAIN = ["astronaut", "rocket", "hubble_deep_field", "immunohistochemistry", "retina", "motorcycle_left",
                 "coffee"]
BUILTIN_VAL = ["chelsea", "motorcycle_right"]
MEMORY_BUDGET = 256 * 1024 * 1024  # decoded uint8 pixels of a folder kept in RAM; the rest are memory-mapped
VAL_MAX_SIDE = 1024  # held-out validation images from a folder: centre crop of at most this many pixels a side
_STRIP_ROWS = 256  # rows converted at a time while copying a decoded image out of Pillow


def list_images(folder: str | Path, suffixes: Collection[str] = IMAGE_SUFFIXES) -> list[Path]:
    """The files of ``folder`` whose extension is one of ``suffixes`` (default: the images training reads),
    sorted."""
    folder = Path(folder)
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in suffixes and p.is_file())


def _rgb8_strips(im: Image.Image) -> Iterator[np.ndarray]:
    """A Pillow image as uint8 (rows, W, 3) RGB strips, top to bottom: no full-size converted copy."""
    w, h = im.size
    im.load()
    for top in range(0, h, _STRIP_ROWS):
        strip = im.crop((0, top, w, min(h, top + _STRIP_ROWS)))
        yield np.asarray(strip if strip.mode == "RGB" else strip.convert("RGB"))


def _read_error(path: Path, e: BaseException) -> ValueError:
    """'cannot read image NAME: why', naming the file, not the folder it is in (a server path for uploads)."""
    why = str(e).replace(str(path), path.name) or type(e).__name__
    return ValueError(f"cannot read image {path.name!r}: {why}")


def _rgb8(im: Image.Image) -> np.ndarray:
    out = np.empty((im.size[1], im.size[0], 3), np.uint8)
    top = 0
    for strip in _rgb8_strips(im):
        out[top : top + len(strip)] = strip
        top += len(strip)
    return out


def load_rgb8(path: str | Path) -> np.ndarray:
    """An image file as uint8 (H, W, 3) RGB."""
    path = Path(path)
    try:
        with Image.open(path) as im:
            return _rgb8(im)
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise _read_error(path, e) from None


def load_images(paths: list[Path], budget: int | None = None) -> list[np.ndarray]:
    """Image files as uint8 (H, W, 3) RGB arrays, the same as ``load_rgb8`` of each.

    The first ``budget`` (default ``MEMORY_BUDGET``) bytes of pixels are held in RAM; every later
    image is written to one unlinked temporary file (in ``tempfile.gettempdir()``: TMPDIR) and comes
    back as a read-only memory-mapped view of it. One image is decoded at a time, so the peak is
    about one decoded image plus the budget, however many there are.
    """
    out: list[np.ndarray | None] = []
    spilled: list[tuple[int, int, tuple[int, int, int]]] = []  # (index, offset, shape)
    budget = MEMORY_BUDGET if budget is None else budget
    spill = None
    held = 0
    try:
        for i, path in enumerate(map(Path, paths)):
            try:
                with Image.open(path) as im:
                    w, h = im.size
                    if held + w * h * 3 <= budget:
                        held += w * h * 3
                        out.append(_rgb8(im))
                        continue
                    if spill is None:
                        spill = tempfile.TemporaryFile(prefix="n2n-images-")
                    offset = spill.tell()
                    for strip in _rgb8_strips(im):
                        spill.write(strip.tobytes())
                    spilled.append((i, offset, (h, w, 3)))
                    out.append(None)
            except (OSError, ValueError, Image.DecompressionBombError) as e:
                raise _read_error(path, e) from None
        if spill is not None:
            spill.flush()
            mapped = np.memmap(spill, np.uint8, mode="r")  # the mapping keeps the unlinked file alive
            for i, offset, shape in spilled:
                out[i] = mapped[offset : offset + shape[0] * shape[1] * 3].reshape(shape)
    finally:
        if spill is not None:
            spill.close()
    return out  # type: ignore[return-value]


def _centre_crop(img: np.ndarray, side: int) -> np.ndarray:
    h, w = img.shape[:2]
    top, left = max(0, (h - side) // 2), max(0, (w - side) // 2)
    return img[top : top + side, left : left + side]


def builtin_images(names: list[str]) -> list[np.ndarray]:
    """scikit-image's bundled colour photographs, as uint8 (H, W, 3)."""
    import skimage.data as sd

    out = []
    for name in names:
        if name.startswith("motorcycle_"):
            left, right, _ = sd.stereo_motorcycle()
            out.append(left if name.endswith("left") else right)
        else:
            out.append(getattr(sd, name)()[..., :3])
    return [np.ascontiguousarray(a, dtype=np.uint8) for a in out]


def to_tensor(img: np.ndarray) -> Tensor:
    """uint8 (H, W, C) -> float32 (C, H, W) in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float().div_(255)


def _as_image(a: np.ndarray) -> np.ndarray:
    """(H, W, C) uint8, kept as is when memory-mapped (a copy would load it all)."""
    return a if isinstance(a, np.memmap) else np.ascontiguousarray(a)


def _crop(img: np.ndarray, top: int, left: int, patch: int) -> Tensor:
    """A (patch, patch, C) crop as its own tensor: reads only those rows of a memory-mapped image."""
    return torch.from_numpy(np.array(img[top : top + patch, left : left + patch]))


def _augment(t: Tensor, k: int, flip: bool) -> Tensor:
    t = torch.rot90(t, k, dims=(-2, -1))
    return t.flip(-1) if flip else t


def _crop_positions(shapes: list[tuple[int, int]], batch: int, patch: int, gen: torch.Generator):
    """(image index, top, left, rotation, flip) for each sample of a batch."""
    idx = torch.randint(len(shapes), (batch,), generator=gen).tolist()
    out = []
    for i in idx:
        h, w = shapes[i]
        top = int(torch.randint(h - patch + 1, (1,), generator=gen))
        left = int(torch.randint(w - patch + 1, (1,), generator=gen))
        out.append((i, top, left, int(torch.randint(4, (1,), generator=gen)), bool(torch.randint(2, (1,), generator=gen))))
    return out


def _random_crops(images: list[np.ndarray], size: int, patch: int, gen: torch.Generator, what: str) -> Tensor:
    """``size`` random (patch x patch) crops, rotated and flipped at random, of the images at least that large:
    float32 (size, C, patch, patch) in [0, 1], drawn from ``gen``."""
    shapes = [(a.shape[0], a.shape[1]) for a in images]
    usable = [i for i, (h, w) in enumerate(shapes) if min(h, w) >= patch]
    if not usable:
        raise ValueError(f"every training {what} is smaller than the patch size {patch}")
    crops = []
    for i, top, left, k, flip in _crop_positions([shapes[i] for i in usable], size, patch, gen):
        crops.append(_augment(_crop(images[usable[i]], top, left, patch).permute(2, 0, 1), k, flip))
    return torch.stack(crops).float().div_(255)


class PairSource:
    """Base: ``batch(step, seed, size, patch)`` -> (input, target), float32 (B, 3, P, P)."""

    name = "pairs"

    def batch(self, step: int, seed: int, size: int, patch: int) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def describe(self) -> str:
        return self.name


class CleanImages(PairSource):
    """Clean photographs + a noise model: input and target are independent noisy draws of one patch.

    With ``quantize_input`` the input is stored as an 8-bit file would be (rounded, clipped), as
    users send it; with ``jpeg`` some inputs are saved as JPEG too. The target stays unclipped and
    uncompressed so that its noise keeps zero mean: the network learns E[clean | input].
    """

    def __init__(self, images: list[np.ndarray], noise: NoiseModel, quantize_input: bool = True, name: str = "",
                 jpeg: JpegInputs | None = None) -> None:
        if not images:
            raise ValueError("no training images")
        self.images = [_as_image(a) for a in images]
        self.noise, self.quantize_input, self.name, self.jpeg = noise, quantize_input, name or "images", jpeg

    def batch(self, step: int, seed: int, size: int, patch: int) -> tuple[Tensor, Tensor]:
        gen = torch.Generator().manual_seed(seed * 1_000_003 + step)
        clean = _random_crops(self.images, size, patch, gen, "image")
        inp, tgt = self.noise(clean, gen), self.noise(clean, gen)
        if self.quantize_input:
            inp = quantize8(inp)
        if self.jpeg is not None:
            inp = self.jpeg(inp, gen)
        return inp, tgt

    def describe(self) -> str:
        jpeg = f", half the inputs JPEG q{self.jpeg.spec()}" if self.jpeg is not None else ""
        return f"{self.name} ({len(self.images)} clean images, noise {self.noise.spec()}{jpeg})"


class NoisyPairs(PairSource):
    """Aligned noisy pairs (A, B) of uint8 (H, W, 3) arrays; A is the input, B the target (swapped at random)."""

    def __init__(self, a: list[np.ndarray], b: list[np.ndarray], name: str = "pairs") -> None:
        if not a or len(a) != len(b):
            raise ValueError(f"need matching non-empty pair lists, got {len(a)} and {len(b)}")
        for i, (x, y) in enumerate(zip(a, b)):
            if x.shape != y.shape:
                raise ValueError(f"pair {i}: A is {x.shape} but B is {y.shape}")
        self.a, self.b = [_as_image(x) for x in a], [_as_image(y) for y in b]
        self.name = name

    def batch(self, step: int, seed: int, size: int, patch: int) -> tuple[Tensor, Tensor]:
        gen = torch.Generator().manual_seed(seed * 1_000_003 + step)
        shapes = [(x.shape[0], x.shape[1]) for x in self.a]
        smallest = min(min(s) for s in shapes)
        if smallest < patch:  # round down so that pooling networks still divide evenly
            patch = max(8, smallest // 8 * 8) if smallest >= 8 else smallest
        ins, tgts = [], []
        for i, top, left, k, flip in _crop_positions(shapes, size, patch, gen):
            pa = _augment(_crop(self.a[i], top, left, patch).permute(2, 0, 1), k, flip)
            pb = _augment(_crop(self.b[i], top, left, patch).permute(2, 0, 1), k, flip)
            if torch.rand(1, generator=gen).item() < 0.5:
                pa, pb = pb, pa
            ins.append(pa)
            tgts.append(pb)
        return torch.stack(ins).float().div_(255), torch.stack(tgts).float().div_(255)

    def describe(self) -> str:
        return f"{self.name} ({len(self.a)} noisy pairs)"


class NoisyPhotos(PairSource):
    """Single noisy photos (uint8 (H, W, 3) arrays), each used alone: a batch is (crops, the same crops).

    A training method for single shots (Neighbor2Neighbor) makes its own input and target from each
    crop. Photos smaller than the patch are passed over.
    """

    def __init__(self, photos: list[np.ndarray], name: str = "photos") -> None:
        if not photos:
            raise ValueError("no training photos")
        self.photos, self.name = [_as_image(a) for a in photos], name

    def batch(self, step: int, seed: int, size: int, patch: int) -> tuple[Tensor, Tensor]:
        noisy = _random_crops(self.photos, size, patch, torch.Generator().manual_seed(seed * 1_000_003 + step), "photo")
        return noisy, noisy

    def describe(self) -> str:
        return f"{self.name} ({len(self.photos)} single noisy photos)"


@dataclass
class Dataset:
    """What training needs: a pair source and held-out (noisy, reference) images for validation PSNR.

    The reference is the clean image, or else what ``val_against`` says."""

    train: PairSource
    val: list[tuple[Tensor, Tensor]]  # (noisy, reference), each (3, H, W) float in [0, 1]
    val_against: str | None = None  # None: the clean images


def synthetic_val(images: list[np.ndarray], noise: NoiseModel, seed: int = 0,
                  jpeg_quality: int | None = None) -> list[tuple[Tensor, Tensor]]:
    """Held-out clean images with fixed-seed noise, stored as 8-bit (the shipped-weights protocol),
    or saved as JPEG of ``jpeg_quality`` (noisy photos as phones send them)."""
    out = []
    for i, img in enumerate(images):
        clean = to_tensor(img)
        gen = torch.Generator().manual_seed(seed + i)
        noisy = quantize8(noise(clean[None], gen))[0]
        out.append((jpeg_compress(noisy, jpeg_quality) if jpeg_quality else noisy, clean))
    return out


def load_tensor_pairs(path: str | Path) -> tuple[Tensor, Tensor]:
    """The course format: a pickled tuple of two uint8 tensors N x 3 x H x W (.pkl or .pt)."""
    path = Path(path)
    try:
        if path.suffix == ".pkl":
            with open(path, "rb") as f:
                obj = pickle.load(f)  # noqa: S301 - the course's own format; only load files you trust
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure to unpickle is a bad file
        raise ValueError(f"cannot read {path}: {e}") from None
    if not (isinstance(obj, (tuple, list)) and len(obj) == 2 and all(isinstance(t, Tensor) for t in obj)):
        raise ValueError(f"{path} must hold a tuple of two tensors (N x 3 x H x W)")
    a, b = obj
    if a.shape != b.shape or a.dim() != 4 or a.shape[1] != 3:
        raise ValueError(f"{path}: expected two N x 3 x H x W tensors, got {tuple(a.shape)} and {tuple(b.shape)}")
    return a, b


def _as_float(t: Tensor) -> Tensor:
    return t.float().div(255) if t.dtype == torch.uint8 else t.float().div(255 if t.max() > 1.5 else 1)


def neighbour_val(photos: list[np.ndarray], cell: int, seed: int = 0) -> list[tuple[Tensor, Tensor]]:
    """Held-out single noisy photos as validation pairs (g1(x), g2(x)): two neighbour sub-samplings
    (``functional.neighbor``, fixed by ``seed``) of each photo's centre crop (at most ``VAL_MAX_SIDE``, cut
    to a multiple of ``cell``). The PSNR of the output for g1(x) against g2(x) is not that against a clean
    image (g2's own noise bounds it), but it rises as the denoiser improves."""
    out = []
    for i, photo in enumerate(photos):
        crop = _centre_crop(np.asarray(photo), VAL_MAX_SIDE)
        h, w = crop.shape[0] // cell * cell, crop.shape[1] // cell * cell
        if min(h, w) < cell:
            continue
        image = to_tensor(crop[:h, :w])[None]
        first, second = neighbour_indices(1, h, w, cell, torch.Generator().manual_seed(seed + i))
        out.append((subsample(image, first)[0], subsample(image, second)[0]))
    return out


def _singles_dataset(spec: str, noise: NoiseModel, seed: int, val_count: int, cell: int,
                     has_val: bool) -> Dataset:
    """Single noisy photos (Neighbor2Neighbor): ``builtin`` (one fixed noise draw each) or a folder."""
    if spec == "builtin":
        photos = []
        for i, img in enumerate(builtin_images(BUILTIN_TRAIN)):
            noisy = quantize8(noise(to_tensor(img)[None], torch.Generator().manual_seed(seed + 7919 * (i + 1))))[0]
            photos.append(noisy.mul(255).round_().to(torch.uint8).permute(1, 2, 0).contiguous().numpy())
        name = f"builtin, one {noise.spec()} draw each"
        return Dataset(NoisyPhotos(photos, name=name), synthetic_val(builtin_images(BUILTIN_VAL), noise, seed))
    path = Path(spec)
    if not path.is_dir():
        raise ValueError(f"no folder of noisy photos at {spec!r}: neighbor2neighbor trains on a folder of single "
                         "noisy photos (or 'builtin')")
    if (path / "A").is_dir() and (path / "B").is_dir():
        raise ValueError(f"{path.name} holds noisy pairs (A/ and B/): train on pairs with the noise2noise method, "
                         "or give neighbor2neighbor a folder of single photos")
    files = list_images(path)
    if not files:
        raise ValueError(f"{path.name} holds no images (png, jpg, tif, webp, bmp)")
    hold = 0 if has_val else min(val_count, len(files) // 5)
    val = neighbour_val([load_rgb8(f) for f in files[:hold]], cell, seed)
    return Dataset(NoisyPhotos(load_images(files[hold:]), name=path.name), val,
                   val_against="a second neighbour sub-sampling of the photo")


def open_dataset(spec: str, noise: NoiseModel | None = None, val_spec: str | None = None, seed: int = 0,
                 val_count: int = 4, jpeg: JpegInputs | None = None, singles: bool = False,
                 cell: int = 2) -> Dataset:
    """``builtin`` | a folder of clean images | a folder with A/ and B/ | a course .pkl/.pt file;
    with ``singles`` (Neighbor2Neighbor): ``builtin`` | a folder of single noisy photos.

    ``jpeg`` (clean-image sources only) saves a share of the training inputs as JPEG. Held out of a
    folder of single photos, validation pairs are sub-sampled with ``cell`` (``neighbour_val``)."""
    noise = noise or Gaussian(25.0)
    if singles:
        ds = _singles_dataset(spec, noise, seed, val_count, cell, val_spec is not None)
    elif spec == "builtin":
        ds = Dataset(CleanImages(builtin_images(BUILTIN_TRAIN), noise, name="builtin", jpeg=jpeg),
                     synthetic_val(builtin_images(BUILTIN_VAL), noise, seed))
    else:
        path = Path(spec)
        if not path.exists():
            raise ValueError(f"no dataset at {spec!r}: give 'builtin', a folder of images, a folder with A/ and B/, "
                             "or a .pkl/.pt file")
        if path.is_file():
            a, b = load_tensor_pairs(path)
            hwc = lambda t: [x.permute(1, 2, 0).contiguous().numpy() for x in t]  # noqa: E731
            ds = _pairs_dataset(hwc(a), hwc(b), path.name, val_count if val_spec is None else 0)
        elif (path / "A").is_dir() and (path / "B").is_dir():
            names = sorted({p.name for p in list_images(path / "A")} & {p.name for p in list_images(path / "B")})
            if not names:
                raise ValueError(f"{path}: A/ and B/ share no image file names")
            both = load_images([path / "A" / n for n in names] + [path / "B" / n for n in names])
            ds = _pairs_dataset(both[: len(names)], both[len(names):], path.name, val_count if val_spec is None else 0)
        else:
            files = list_images(path)
            if not files:
                raise ValueError(f"{path} holds no images (png, jpg, tif, webp, bmp)")
            hold = min(val_count, len(files) // 5) if val_spec is None else 0
            val = [_centre_crop(load_rgb8(f), VAL_MAX_SIDE) for f in files[:hold]]
            ds = Dataset(CleanImages(load_images(files[hold:]), noise, name=path.name, jpeg=jpeg),
                         synthetic_val(val, noise, seed))
    if val_spec is not None:
        ds.val, ds.val_against = open_validation(val_spec, noise, seed), None
    return ds


def _pairs_dataset(a: list[np.ndarray], b: list[np.ndarray], name: str, val_count: int) -> Dataset:
    """Noisy pairs (A, B), the first min(``val_count``, n // 5) held out for validation (none under 5 pairs):
    (A, B) centre-cropped, so that validation reads the PSNR between the output for one shot and the other
    shot. That is not the PSNR against a clean image (B's own noise bounds it), but it rises as the
    denoiser improves: E|f(A) - B|^2 = E|f(A) - clean|^2 + B's noise variance."""
    if not a or len(a) != len(b):
        raise ValueError(f"need matching non-empty pair lists, got {len(a)} and {len(b)}")
    hold = min(val_count, len(a) // 5)
    pairs = [(to_tensor(_centre_crop(np.asarray(x), VAL_MAX_SIDE)), to_tensor(_centre_crop(np.asarray(y), VAL_MAX_SIDE)))
             for x, y in zip(a[:hold], b[:hold])]
    for i, (x, y) in enumerate(pairs):
        if x.shape != y.shape:
            raise ValueError(f"pair {i}: A is {tuple(x.shape)} but B is {tuple(y.shape)}")
    return Dataset(NoisyPairs(a[hold:], b[hold:], name=name), pairs,
                   val_against="the other shot")


def open_validation(spec: str, noise: NoiseModel, seed: int = 0, limit: int | None = None,
                    jpeg_quality: int | None = None) -> list[tuple[Tensor, Tensor]]:
    """(noisy, clean) pairs: a course .pkl/.pt (noisy, clean), or clean images (folder / builtin) + noise
    (saved as JPEG of ``jpeg_quality`` when given)."""
    if spec == "builtin":
        return synthetic_val(builtin_images(BUILTIN_VAL), noise, seed, jpeg_quality)
    path = Path(spec)
    if path.is_file():
        noisy, clean = load_tensor_pairs(path)
        pairs = [(_as_float(n), _as_float(c)) for n, c in zip(noisy, clean)]
        return pairs[:limit] if limit else pairs
    if not path.is_dir():
        raise ValueError(f"no validation data at {spec!r}")
    files = list_images(path)[:limit] if limit else list_images(path)
    return synthetic_val([load_rgb8(f) for f in files], noise, seed, jpeg_quality)


class BatchLoader:
    """Produces batches for steps [start, stop) on a background thread, a few steps ahead."""

    def __init__(self, source: PairSource, seed: int, batch_size: int, patch: int, start: int, stop: int,
                 prefetch: int = 4) -> None:
        self.source, self.seed, self.batch_size, self.patch = source, seed, batch_size, patch
        self.start, self.stop = start, stop
        self._queue: queue.Queue = queue.Queue(maxsize=prefetch)
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._work, daemon=True, name="n2n-batches")
        self._thread.start()

    def _work(self) -> None:
        try:
            for step in range(self.start, self.stop):
                item = (step, *self.source.batch(step, self.seed, self.batch_size, self.patch))
                while not self._halt.is_set():
                    try:
                        self._queue.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if self._halt.is_set():
                    return
        except BaseException as e:  # noqa: BLE001 - handed to the consumer
            self._queue.put(e)

    def __iter__(self) -> Iterator[tuple[int, Tensor, Tensor]]:
        for _ in range(self.start, self.stop):
            item = self._queue.get()
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        self._halt.set()
        self._thread.join(timeout=5)
