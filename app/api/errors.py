"""Error handlers whose responses are always valid JSON.

Python's JSON parser accepts ``NaN``, ``Infinity`` and ``1e400`` (read as ``inf``), and FastAPI's
default 422 handler echoes each invalid value back in ``input``; a non-finite float there made
the response unserialisable (``allow_nan=False``) and the request a 500. This handler writes
non-finite numbers as the strings ``"NaN"``, ``"Infinity"`` and ``"-Infinity"``, and undecodable
bytes as text, so a bad body always gets its 422. An echoed value (``input``, and the text of ``msg`` and
``ctx``) is cut to ``ECHO_LIMIT`` characters, ending with ``ELLIPSIS``: a 1 MB bad field is not sent back.
"""

from __future__ import annotations

import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

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


def install(app: FastAPI) -> None:
    from sqlalchemy.exc import OperationalError

    app.add_exception_handler(RequestValidationError, validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(OperationalError, database_unavailable)
