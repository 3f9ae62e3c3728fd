"""Uploaded training datasets: zips of clean images, or of noisy pairs in A/ and B/.

Unpacked under ``<data_dir>/datasets/<id>/`` after checks on every member: count, total size,
compression ratio (zip bombs), paths that would escape the folder (zip slip), links, and file
types. Unpacking goes to a temporary folder that is renamed into place only when complete.
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

from n2n_core.atomic import atomic_write_text
from n2n_core.data import IMAGE_SUFFIXES


class DatasetError(ValueError):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def _safe_member_path(name: str) -> PurePosixPath | None:
    """The member's relative path, or None for folders and OS clutter; raises on escaping paths."""
    if name.endswith("/"):
        return None
    p = PurePosixPath(name.replace("\\", "/"))
    if p.is_absolute() or ".." in p.parts or (p.parts and ":" in p.parts[0]):
        raise DatasetError(f"unsafe path in zip: {name!r}")
    if any(part.startswith(".") or part == "__MACOSX" for part in p.parts):
        return None
    return p


def ingest_zip(data: bytes, root: Path, max_files: int, max_uncompressed: int, max_ratio: float) -> dict[str, Any]:
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise DatasetError("not a zip file", 400) from None
    members = zf.infolist()
    if len(members) > max_files:
        raise DatasetError(f"zip holds {len(members)} entries; the limit is {max_files}", 413)
    total = 0
    files: list[tuple[zipfile.ZipInfo, PurePosixPath]] = []
    for m in members:
        p = _safe_member_path(m.filename)
        if p is None:
            continue
        if m.flag_bits & 0x1:
            raise DatasetError(f"encrypted zip members are not supported: {m.filename!r}")
        if stat.S_ISLNK(m.external_attr >> 16):
            raise DatasetError(f"links are not allowed in dataset zips: {m.filename!r}")
        if p.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        total += m.file_size
        if total > max_uncompressed:
            raise DatasetError(f"zip unpacks to more than {max_uncompressed} bytes", 413)
        if m.compress_size and m.file_size / m.compress_size > max_ratio:
            raise DatasetError(f"{m.filename!r} is compressed {m.file_size / m.compress_size:.0f}:1; "
                               "this looks like a zip bomb", 413)
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
        rel = [(m, PurePosixPath(f"{i:05d}_{p.name}")) for i, (m, p) in enumerate(rel)]

    dataset_id = "d-" + uuid.uuid4().hex[:10]
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dataset_id}.", dir=root))
    try:
        written = 0
        for m, p in rel:
            dst = tmp.joinpath(*p.parts)
            dst.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(m) as src, open(dst, "wb") as out:
                while chunk := src.read(1 << 20):  # never trust the header's sizes
                    written += len(chunk)
                    if written > max_uncompressed:
                        raise DatasetError(f"zip unpacks to more than {max_uncompressed} bytes", 413)
                    out.write(chunk)
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
        raise DatasetError(f"cannot unpack the zip: {e}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return info


def list_datasets(root: Path) -> list[dict[str, Any]]:
    if not root.is_dir():
        return []
    out = []
    for d in sorted(root.iterdir()):
        meta = d / "dataset.json"
        if d.is_dir() and not d.name.startswith(".") and meta.exists():
            out.append(json.loads(meta.read_text()))
    return out


def dataset_exists(root: Path, dataset_id: str) -> bool:
    return (root / dataset_id / "dataset.json").exists() and "/" not in dataset_id and ".." not in dataset_id
