"""Uploaded training datasets: zips of images (kind "clean": clean photos for noise2noise with a noise model,
or your own noisy photos for neighbor2neighbor), or of noisy pairs in A/ and B/ (kind "pairs").

Unpacked under ``<data_dir>/datasets/<id>/`` after checks on every member: count, total size,
compression ratio (zip bombs), names (zip slip: absolute paths, ``..``; NUL; a component over 255
bytes or a name over 1024), links, file types, and each image's header: it must be a readable
PNG/JPEG/TIFF/WebP/BMP of at most ``max_pixels`` pixels (N2N_MAX_PIXELS, read without decoding
pixels), and all images together at most ``max_total_pixels`` (N2N_MAX_DATASET_PIXELS). Unpacking
goes to a temporary folder that is renamed into place only when complete. The dataset's metadata
(returned here, also written as ``dataset.json`` beside the images) is registered in the shared
database by the caller (``app.store.DatasetRows``), where every replica and worker finds it.

Messages name members by their name inside the zip, never by a path on this server.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import stat
import tempfile
import uuid
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import Any

from PIL import Image, UnidentifiedImageError

from n2n_core.data import images
from n2n_core.nn.atomic import atomic_write_text
from n2n_core.data.datasets import IMAGE_SUFFIXES

from app.core.messages import scrub_paths

MAX_NAME_BYTES = 1024  # a member's whole name inside the zip
MAX_PART_BYTES = 255  # one component of it (NAME_MAX of Linux file systems)


class DatasetError(ValueError):
    """A dataset zip the service will not take; ``str()``: why (it names zip members, never server paths)."""


class DatasetTooLarge(DatasetError):
    """A zip past a size limit: too many entries, too many bytes or pixels unpacked, a zip bomb's ratio."""


def _show(name: str, limit: int = 80) -> str:
    """A member name for a message: quoted, long ones shortened."""
    return repr(name) if len(name) <= limit else repr(name[: limit - 20] + "..." + name[-17:])


def _nbytes(text: str) -> int:
    return len(text.encode("utf-8", "surrogateescape"))


def _safe_member_path(name: str) -> PurePosixPath | None:
    """The member's relative path, or None for folders and OS clutter; raises on escaping paths."""
    if "\0" in name:
        raise DatasetError(f"unsafe path in zip: {_show(name)} holds a NUL character")
    if _nbytes(name) > MAX_NAME_BYTES:
        raise DatasetError(f"name too long in zip: {_show(name)} is {_nbytes(name)} bytes; "
                           f"the limit is {MAX_NAME_BYTES}")
    if name.endswith("/"):
        return None
    p = PurePosixPath(name.replace("\\", "/"))
    if p.is_absolute() or ".." in p.parts or (p.parts and ":" in p.parts[0]):
        raise DatasetError(f"unsafe path in zip: {_show(name)}")
    if any(_nbytes(part) > MAX_PART_BYTES for part in p.parts):
        raise DatasetError(f"name too long in zip: a folder or file name in {_show(name)} is over "
                           f"{MAX_PART_BYTES} bytes")
    if any(part.startswith(".") or part == "__MACOSX" for part in p.parts):
        return None
    return p


def _stored_name(i: int, name: str) -> str:
    """'00012_name.png' for the i-th clean image, the stem shortened to keep it within MAX_PART_BYTES."""
    prefix, p = f"{i:05d}_", PurePosixPath(name)
    room = MAX_PART_BYTES - len(prefix) - _nbytes(p.suffix)
    stem = p.stem.encode("utf-8", "surrogateescape")[:room].decode("utf-8", "ignore")
    return prefix + stem + p.suffix


def _check_image(path: Path, name: str, max_pixels: int | None) -> int:
    """The unpacked member's pixel count; DatasetError (400) unless its header is that of a readable,
    supported image within ``max_pixels``. Reads the header (and, for PNG, the chunk checksums), no pixels."""
    try:
        with open(path, "rb") as fh:
            fmt, w, h = images.probe(fh)
            if fmt in images.RAW_FORMATS:  # training reads with Pillow, which would see only a RAW's preview
                raise DatasetError(f"{_show(name)} is a camera RAW ({fmt}): training reads PNG, JPEG, TIFF, WebP or "
                                   "BMP; develop it to one of those first")
            if max_pixels is not None and w * h > max_pixels:
                raise DatasetError(f"{_show(name)} is {w}x{h} = {w * h} pixels; the limit per image is {max_pixels}")
            fh.seek(0)
            with Image.open(fh) as im:  # what training reads it with
                im.verify()
    except images.ImageError as e:
        why = "its header declares too many pixels" if isinstance(e, images.ImageTooLarge) else str(e)
        raise DatasetError(f"{_show(name)}: {scrub_paths(why, path)}") from None
    except DatasetError:
        raise
    except UnidentifiedImageError:  # probed by tifffile, but training reads with Pillow
        raise DatasetError(f"{_show(name)} is not an image training can read: use PNG, JPEG, TIFF, WebP or BMP "
                           "in 8-bit grey, RGB or RGBA, or 16-bit grey or RGB") from None
    except MemoryError:
        raise
    except Exception as e:  # noqa: BLE001 - unreadable by the training reader: bad input, not a server error
        why = scrub_paths(str(e), path) or type(e).__name__
        raise DatasetError(f"{_show(name)} is not a readable image: {why}") from None
    return w * h


def ingest_zip(data: bytes, root: Path, max_files: int, max_uncompressed: int, max_ratio: float,
               max_pixels: int | None = None, max_total_pixels: int | None = None) -> dict[str, Any]:
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError, OSError, NotImplementedError):
        raise DatasetError("not a zip file") from None
    members = zf.infolist()
    if len(members) > max_files:
        raise DatasetTooLarge(f"zip holds {len(members)} entries; the limit is {max_files}")
    total = 0
    files: list[tuple[zipfile.ZipInfo, PurePosixPath]] = []
    for m in members:
        p = _safe_member_path(m.filename)
        if p is None:
            continue
        if m.flag_bits & 0x1:
            raise DatasetError(f"encrypted zip members are not supported: {_show(m.filename)}")
        if stat.S_ISLNK(m.external_attr >> 16):
            raise DatasetError(f"links are not allowed in dataset zips: {_show(m.filename)}")
        if p.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        total += m.file_size
        if total > max_uncompressed:
            raise DatasetTooLarge(f"zip unpacks to more than {max_uncompressed} bytes")
        if m.compress_size and m.file_size / m.compress_size > max_ratio:
            raise DatasetTooLarge(f"{_show(m.filename)} is compressed {m.file_size / m.compress_size:.0f}:1; "
                                  "this looks like a zip bomb")
        files.append((m, p))
    if not files:
        raise DatasetError("zip holds no images (png, jpg, tif, webp, bmp)")

    # Strip one common top folder ("mydata/A/x.png" -> "A/x.png").
    tops = {p.parts[0] for _, p in files}
    strip = 1 if len(tops) == 1 and all(len(p.parts) > 1 for _, p in files) else 0
    rel = [(m, PurePosixPath(*p.parts[strip:])) for m, p in files]
    top_dirs = {p.parts[0] for _, p in rel if len(p.parts) > 1}
    kind = "pairs" if {"A", "B"} <= top_dirs else "clean"
    if kind == "pairs":
        a = {p.name for _, p in rel if p.parts[0] == "A"}
        b = {p.name for _, p in rel if p.parts[0] == "B"}
        if not a & b:
            raise DatasetError("A/ and B/ share no file names: pairs must have matching names")
        rel = [(m, p) for m, p in rel if p.parts[0] in ("A", "B") and len(p.parts) == 2]
    else:
        rel = [(m, PurePosixPath(_stored_name(i, p.name))) for i, (m, p) in enumerate(rel)]

    dataset_id = "d-" + uuid.uuid4().hex[:10]
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dataset_id}.", dir=root))
    member = ""
    try:
        written = pixels = 0
        for m, p in rel:
            member = m.filename
            dst = tmp.joinpath(*p.parts)
            dst.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(m) as src, open(dst, "wb") as out:
                while chunk := src.read(1 << 20):  # never trust the header's sizes
                    written += len(chunk)
                    if written > max_uncompressed:
                        raise DatasetTooLarge(f"zip unpacks to more than {max_uncompressed} bytes")
                    out.write(chunk)
            pixels += _check_image(dst, m.filename, max_pixels)
            if max_total_pixels is not None and pixels > max_total_pixels:
                raise DatasetTooLarge(f"the images hold more than {max_total_pixels} pixels together; that is "
                                      "the limit for one dataset")
        member = ""
        for f in tmp.rglob("*"):  # durable before the folder is published
            if f.is_file():
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
        info = {"id": dataset_id, "kind": kind,
                "images": len(rel) if kind == "clean" else len(a & b),  # type: ignore[possibly-undefined]
                "bytes": written}
        atomic_write_text(tmp / "dataset.json", json.dumps(info))
        tmp.rename(root / dataset_id)
    except DatasetError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError, OSError, ValueError) as e:
        shutil.rmtree(tmp, ignore_errors=True)
        # an OSError's text carries the server path it failed on: give only its reason
        why = (e.strerror if isinstance(e, OSError) else scrub_paths(str(e), tmp, root)) or type(e).__name__
        where = f" at {_show(member)}" if member else ""
        raise DatasetError(f"cannot unpack the zip{where}: {why}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return info
