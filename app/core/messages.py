"""Messages that leave the server: no server path may appear in them."""

from __future__ import annotations

import re
from pathlib import Path

# An absolute POSIX path (two or more components) or a Windows drive path, up to a quote, space or bracket.
_PATH = re.compile(r"(?<![\w.:/])(?:/[^\s'\"/()\[\]<>,;]+){2,}/?|[A-Za-z]:\\[^\s'\"()\[\]<>,;]+")


def without_paths(text: str) -> str:
    """``text`` with every absolute path replaced by its last component: '/srv/n2n/models/x.json' -> 'x.json'."""
    return _PATH.sub(lambda m: re.split(r"[/\\]", m.group(0).rstrip("/\\"))[-1] or "/", text)


def scrub_paths(text: str, *paths: Path) -> str:
    """``text`` with these known server paths (and their absolute, resolved forms) replaced by '<data>'."""
    for p in paths:
        forms = {str(p), str(p.absolute()), str(p.resolve())} - {"", ".", "..", "/"}
        for form in sorted(forms, key=len, reverse=True):
            text = text.replace(form, "<data>")
    return text
