"""Error handlers whose responses are always valid JSON.

Python's JSON parser accepts ``NaN``, ``Infinity`` and ``1e400`` (read as ``inf``), and FastAPI's
default 422 handler echoes each invalid value back in ``input``; a non-finite float there made
the response unserialisable (``allow_nan=False``) and the request a 500. This handler writes
non-finite numbers as the strings ``"NaN"``, ``"Infinity"`` and ``"-Infinity"``, and undecodable
bytes as text, so a bad body always gets its 422.
"""

from __future__ import annotations

import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse


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
    return JSONResponse(status_code=422, content={"detail": json_safe(exc.errors())})


async def database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    """The database is away for a moment (a restart, a failover): 503 with Retry-After, not 500."""
    return JSONResponse({"detail": "the database is unavailable; retry shortly"}, status_code=503,
                        headers={"Retry-After": "5"})


def install(app: FastAPI) -> None:
    from sqlalchemy.exc import OperationalError

    app.add_exception_handler(RequestValidationError, validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(OperationalError, database_unavailable)
