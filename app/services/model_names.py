"""Model names: what a user calls a trained model (``POST /train``'s ``name``), checked, and the default one.

A name is 1 to 64 characters: letters (any alphabet), digits, spaces and ``- _ . , : ( ) + #``, starting
with a letter or a digit and not ending with a space. Names need not be unique: a model is addressed by
its id; the name is what ``GET /models``, the page's model menu and the card show.
"""

from __future__ import annotations

import re
import time
from pathlib import PurePath
from typing import Any

NAME_MAX = 64
_ALLOWED = re.compile(r"[\w \-.,:()+#]+")
_BAD_IN_TOKEN = re.compile(r"[^\w\-.,:()+#]+")  # what a one-word part of a default name may not hold
_BAD_IN_NAME = re.compile(r"[^\w \-.,:()+#]+")
PLACEHOLDER = "model"  # what every trained model was called before names existed
NAME_RULE = (f"1 to {NAME_MAX} characters: letters, digits, spaces and - _ . , : ( ) + #, starting with a letter "
             "or a digit")


def check_name(name: str) -> str:
    """``name`` when it is a valid model name; ValueError saying what is wrong otherwise."""
    if not 1 <= len(name) <= NAME_MAX:
        raise ValueError(f"name must be {NAME_RULE} (got {len(name)} characters)")
    if not _ALLOWED.fullmatch(name):
        bad = sorted({c for c in name if not _ALLOWED.fullmatch(c)})
        raise ValueError(f"name must be {NAME_RULE}; not allowed: {' '.join(repr(c) for c in bad[:5])}")
    if not name[0].isalnum():
        raise ValueError(f"name must start with a letter or a digit ({NAME_RULE})")
    if name.endswith(" "):
        raise ValueError("name must not end with a space")
    return name


def default_name(arch: str, dataset: str, when: float | None = None) -> str:
    """'<arch> <dataset> <YYYY-MM-DD HH:MM>' (UTC): what a model is called when its job named none."""
    stamp = time.strftime("%Y-%m-%d %H:%M", time.gmtime(time.time() if when is None else when))
    return _fit(f"{arch} {_token(dataset)}", len(stamp) + 1) + " " + stamp


def name_of_card(card: dict[str, Any], created_at: float | None = None) -> str:
    """The name of a model registered without one (made before names existed, or put under models/ by
    hand): its card's name unless that is the old placeholder, else a default name from the card."""
    name = card.get("name")
    if isinstance(name, str) and name.strip() and name.strip() != PLACEHOLDER:
        return _clean(name.strip())
    training = card.get("training") if isinstance(card.get("training"), dict) else {}
    data = training.get("data") if isinstance(training.get("data"), str) else "data"
    return default_name(str(card.get("architecture") or PLACEHOLDER), PurePath(data).name or "data", created_at)


def _token(text: str) -> str:
    """``text`` as one word of a name: every run of other characters (spaces too) replaced by '-'."""
    return _BAD_IN_TOKEN.sub("-", text).strip("-") or "data"


def _clean(text: str) -> str:
    """A free text made into a valid name: runs of disallowed characters replaced by '-', cut to length."""
    out = _BAD_IN_NAME.sub("-", text).strip(" -")
    out = out if out[:1].isalnum() else f"{PLACEHOLDER} {out}"
    return out[:NAME_MAX].rstrip()


def _fit(text: str, room: int) -> str:
    return text[: NAME_MAX - room].rstrip()
