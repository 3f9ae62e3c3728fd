"""Request bodies spooled as they arrive: the first ``SPOOL_MEMORY`` bytes in memory, the rest in an
anonymous temporary file (the system's temporary folder, ``TMPDIR``), so that an upload still arriving
holds at most that much memory however large it is and however slowly it comes. Multipart uploads get
the same from Starlette's parser (its files are spooled at 1 MiB too). The decoder then reads the spool.
"""

from __future__ import annotations

import asyncio
import tempfile
from typing import BinaryIO

from fastapi import HTTPException, Request

from app.services.imaging import read_all

SPOOL_MEMORY = 1024 * 1024  # bytes of a body kept in memory before it goes to the temporary file


async def spool_body(request: Request) -> BinaryIO:
    """The raw request body, written to a spool as it arrives (at position 0); the caller closes it."""
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY)
    try:
        async for chunk in request.stream():
            if chunk:
                spool.write(chunk)
        spool.seek(0)
    except BaseException:
        spool.close()
        raise
    return spool  # type: ignore[return-value]


async def spool_upload(request: Request, field: str = "file", accept: tuple[str, ...] = ("image/",)) -> BinaryIO:
    """The upload, spooled (at position 0; the caller closes it): multipart field ``field``, or the raw body
    with an accepted content type; 400 without the field, 415 for another content type. The file name a
    multipart upload gives (unchecked: ``app.services.imaging.download_name`` makes it safe) is left in
    ``request.state.upload_filename`` (None for a raw body)."""
    request.state.upload_filename = None
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "multipart/form-data":
        form = await request.form()
        item = form.get(field)
        if item is None or isinstance(item, str):
            await form.close()
            raise HTTPException(400, f"multipart upload needs a file in field '{field}'")
        request.state.upload_filename = item.filename or None
        return item.file
    if any(ctype.startswith(a) for a in accept) or ctype == "application/octet-stream":
        return await spool_body(request)
    raise HTTPException(415, f"send multipart/form-data with field '{field}' or a raw body of type "
                             f"{' or '.join(a + '*' if a.endswith('/') else a for a in accept)}; got {ctype or 'none'}")


async def read_upload(request: Request, field: str = "file", accept: tuple[str, ...] = ("image/",)) -> bytes:
    """The upload as bytes (``spool_upload``, then read off the event loop)."""
    spool = await spool_upload(request, field, accept)
    try:
        return await asyncio.to_thread(read_all, spool)
    finally:
        spool.close()
