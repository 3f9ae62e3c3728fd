"""Every exception-to-HTTP mapping of the service, and error handlers whose responses are always valid JSON.

The services and jobs raise plain exceptions named for what went wrong (``app.services.imaging``'s
``ImageRefused`` family, ``app.services.denoiser``'s QueueFull, Stopping and Abandoned, the registry's
UnknownModel, NoActiveModel, BrokenModel and ModelProtected, the job store's StoreFull, a DatasetError); this
module alone turns them into status codes, messages and headers: as exception handlers (``install``) or through
the functions the routes call (``denoise_refusal``, ``model_refusals``, ...).

Python's JSON parser accepts ``NaN``, ``Infinity`` and ``1e400`` (read as ``inf``), and FastAPI's
default 422 handler echoes each invalid value back in ``input``; a non-finite float there made
the response unserialisable (``allow_nan=False``) and the request a 500. This handler writes
non-finite numbers as the strings ``"NaN"``, ``"Infinity"`` and ``"-Infinity"``, and undecodable
bytes as text, so a bad body always gets its 422. An echoed value (``input``, and the text of ``msg`` and
``ctx``) is cut to ``ECHO_LIMIT`` characters, ending with ``ELLIPSIS``: a 1 MB bad field is not sent back.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from app.core.messages import scrub_paths
from app.jobs.denoise import StoreFull, TooManyJobs
from app.services.datasets import DatasetError, DatasetTooLarge
from app.services.denoiser import Abandoned, QueueFull, Stopping
from app.services.imaging import (BadAspectRatio, BadOutputOptions, EmptyBody, ImageRefused, MultipleFrames,
                                  OutputTooLarge, TooManyPixels, UnreadableImage, UnsupportedFormat,
                                  UnsupportedOutput)
from app.services.registry import BrokenModel, ModelProtected, NoActiveModel, UnknownModel

ECHO_LIMIT = 100  # characters of an invalid value a 422 echoes
ELLIPSIS = "…"


def clip(value: Any, limit: int = ECHO_LIMIT) -> Any:
    """``value`` (already JSON-safe) with every string over ``limit`` characters cut to ``limit`` plus
    ``ELLIPSIS``; a list or object is echoed as its compact JSON, clipped, when that is longer."""
    if isinstance(value, str):
        return value if len(value) <= limit else value[:limit] + ELLIPSIS
    if isinstance(value, (list, dict)):
        import json

        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        return value if len(text) <= limit else text[:limit] + ELLIPSIS
    return value


def long_strings(value: Any) -> list[str]:
    """Every string over ``ECHO_LIMIT`` characters inside ``value`` (strings, lists and objects, nested)."""
    if isinstance(value, str):
        return [value] if len(value) > ECHO_LIMIT else []
    if isinstance(value, dict):
        return [s for v in value.values() for s in long_strings(v)]
    if isinstance(value, (list, tuple)):
        return [s for v in value for s in long_strings(v)]
    return []


def clipped_errors(errors: list[Any]) -> list[Any]:
    """pydantic's error list with each echo of the invalid value clipped (``clip``): in ``input``, and where
    the message or its context quotes it (the explanation around a quote is kept)."""
    out = []
    for error in errors:
        if isinstance(error, dict):
            error = dict(error)
            values = sorted(set(long_strings(error.get("input"))), key=len, reverse=True)

            def scrubbed(text: Any) -> Any:
                if not isinstance(text, str):
                    return clip(text)
                quoted = any(value in text for value in values)
                for value in values:
                    text = text.replace(value, clip(value))
                # a long text that quoted the value keeps its words; any other long text is an echo itself
                return clip(text, 3 * ECHO_LIMIT if quoted or len(text) <= 3 * ECHO_LIMIT else ECHO_LIMIT)

            if "msg" in error:
                error["msg"] = scrubbed(error["msg"])
            if "input" in error:
                error["input"] = clip(error["input"])
            if isinstance(error.get("ctx"), dict):
                error["ctx"] = {k: scrubbed(v) for k, v in error["ctx"].items()}
        out.append(error)
    return out


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float replaced by its JavaScript name, bytes by text,
    and anything else ``jsonable_encoder`` handles encoded by it."""
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, dict):
        return {str(json_safe(k)): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [json_safe(v) for v in value]
    if value is None or isinstance(value, (str, int, bool)):
        return value
    if isinstance(value, BaseException):  # a validator's ValueError in ``ctx``: its message
        return str(value)
    try:
        return json_safe(jsonable_encoder(value))
    except Exception:  # noqa: BLE001 - an echo of bad input must never turn a 422 into a 500
        return repr(value)


async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    """422 with pydantic's error list, made JSON-safe."""
    return JSONResponse(status_code=422, content={"detail": clipped_errors(json_safe(exc.errors()))})


async def database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    """The database is away for a moment (a restart, a failover): 503 with Retry-After, not 500."""
    return JSONResponse({"detail": "the database is unavailable; retry shortly"}, status_code=503,
                        headers={"Retry-After": "5"})


# -- refusals of the services ------------------------------------------------------------------------------------
IMAGE_STATUS: dict[type[ImageRefused], int] = {
    EmptyBody: 400,
    UnreadableImage: 400,
    UnsupportedFormat: 415,
    TooManyPixels: 413,
    MultipleFrames: 422,
    BadAspectRatio: 422,
    BadOutputOptions: 422,
    OutputTooLarge: 400,
    UnsupportedOutput: 400,
}


def image_refusal(exc: ImageRefused) -> HTTPException:
    """The answer to an image refused (``app.services.imaging``): 400 unreadable (or too large for the output
    format), 413 too many pixels, 415 an unsupported format, 422 several frames, an absurd aspect ratio or
    output options out of range; its reason as the detail."""
    status = next((IMAGE_STATUS[c] for c in type(exc).__mro__ if c in IMAGE_STATUS), 400)
    return HTTPException(status, str(exc))


def denoise_refusal(exc: BaseException, model_id: str | None) -> HTTPException | None:
    """The HTTP answer to a denoise failure (that of ``POST /denoise``, and the error of a denoise job);
    None for an unexpected error."""
    if isinstance(exc, HTTPException):
        return exc
    if isinstance(exc, ImageRefused):
        return image_refusal(exc)
    if isinstance(exc, QueueFull):
        return HTTPException(503, "the denoising queue is full; retry shortly", headers={"Retry-After": "2"})
    if isinstance(exc, Stopping):
        return HTTPException(503, "the service is shutting down; retry on another instance or shortly",
                             headers={"Retry-After": "5", "Connection": "close"})
    if isinstance(exc, Abandoned):  # the client is gone; this answer reaches nobody
        return HTTPException(499, "client closed the request")
    if isinstance(exc, UnknownModel):
        return HTTPException(404, f"unknown model {model_id!r}; see GET /models")
    if isinstance(exc, (NoActiveModel, BrokenModel)):
        return HTTPException(503, f"{exc}; activate a working model (POST /models/ID/activate)",
                             headers={"Retry-After": "10"})
    return None


def denoise_failure(exc: BaseException, model_id: str | None) -> str | None:
    """The error a denoise job reports when it failed with ``exc``: the detail ``POST /denoise`` would have
    answered (``denoise_refusal``); None for an unexpected error (handed to ``app.jobs.denoise.DenoiseJobs``)."""
    answer = denoise_refusal(exc, model_id)
    return None if answer is None else str(answer.detail)


@contextmanager
def model_refusals(model_id: str) -> Iterator[None]:
    """A registry refusal inside the block as its answer (model management): 404 for an unknown model, 409
    (with the registry's reason) for one that cannot be loaded or may not be deleted."""
    try:
        yield
    except UnknownModel:
        raise HTTPException(404, f"unknown model {model_id!r}") from None
    except (BrokenModel, ModelProtected) as e:
        raise HTTPException(409, str(e)) from None


def store_refusal(exc: StoreFull) -> HTTPException:
    """A denoise job the result store refuses: 429 past one client's quota, 507 past the store's, with
    Retry-After (when the oldest kept result expires)."""
    return HTTPException(429 if isinstance(exc, TooManyJobs) else 507, str(exc),
                         headers={"Retry-After": str(exc.retry_after)})


def dataset_refusal(exc: DatasetError, data_dir: Path) -> HTTPException:
    """A dataset zip refused: 413 past a size limit, else 400; its message names zip members only (scrubbing
    the data folder is a second guard)."""
    return HTTPException(413 if isinstance(exc, DatasetTooLarge) else 400, scrub_paths(str(exc), data_dir))


async def image_refused(request: Request, exc: ImageRefused) -> Response:
    """An image refused anywhere in a route (its header check, options, decoding): ``image_refusal``."""
    return await http_exception_handler(request, image_refusal(exc))


def install(app: FastAPI) -> None:
    from sqlalchemy.exc import OperationalError

    app.add_exception_handler(RequestValidationError, validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(OperationalError, database_unavailable)
    app.add_exception_handler(ImageRefused, image_refused)  # type: ignore[arg-type]
