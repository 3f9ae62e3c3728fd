"""The direction of imports between the rooms of the source tree, read from the code (AST: every import
statement, those inside functions included; nothing is imported):

- ``n2n_core/nn`` (the framework) imports nothing of ``n2n_core`` outside itself;
- ``n2n_core`` imports nothing of ``app``;
- HTTP (``fastapi``, ``starlette``) stays in ``app/api`` and ``app/main.py``: ``app/services``, ``app/jobs``,
  ``app/store`` and ``app/core`` import neither, nor ``app.api``, nor ``app.main``;
- the routes (``app/api/routes``) do no tensor math: they import neither ``torch`` nor ``numpy``;
- ``n2n_core/data`` imports nothing of ``n2n_core.training`` or ``n2n_core.inference``, and
  ``n2n_core/inference`` nothing of ``n2n_core.training``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _is_module(name: str) -> bool:
    """Whether the dotted ``name`` is a module or package of this source tree."""
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _module_of(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path, source: str | None = None) -> list[tuple[int, str]]:
    """(line, dotted name) of everything ``path`` (or ``source``, as if it were ``path``) imports: ``import a.b``
    -> ``a.b``; ``from a import b`` -> ``a.b`` where that is a module of the tree, else ``a``; relative imports
    resolved against ``path``."""
    text = path.read_text(encoding="utf-8") if source is None else source
    tree = ast.parse(text, filename=str(path))
    package = _module_of(path) if path.name == "__init__.py" else _module_of(path).rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            for alias in node.names:
                sub = f"{module}.{alias.name}"
                found.append((node.lineno, sub if alias.name != "*" and _is_module(sub) else module))
    return found


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _files(*folders: str) -> list[Path]:
    out: list[Path] = []
    for folder in folders:
        p = ROOT / folder
        out += [p] if p.is_file() else sorted(p.rglob("*.py"))
    return out


def violations(folders: tuple[str, ...], forbidden, allowed: tuple[str, ...] = ()) -> list[str]:
    """``file:line imports name`` for each import under ``folders`` within a ``forbidden`` prefix (and in none
    of ``allowed``)."""
    bad = []
    for path in _files(*folders):
        for line, name in imports(path):
            if any(_within(name, f) for f in forbidden) and not any(_within(name, a) for a in allowed):
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    return bad


RULES = {
    "the framework (n2n_core/nn) imports nothing else of n2n_core":
        (("n2n_core/nn",), ("n2n_core",), ("n2n_core.nn",)),
    "n2n_core imports nothing of the service (app)":
        (("n2n_core",), ("app",), ()),
    "no HTTP outside app/api and app/main.py":
        (("app/services", "app/jobs", "app/store", "app/core"), ("fastapi", "starlette", "app.api", "app.main"), ()),
    "the routes do no tensor math":
        (("app/api/routes",), ("torch", "numpy"), ()),
    "n2n_core/data imports nothing of training or inference":
        (("n2n_core/data",), ("n2n_core.training", "n2n_core.inference"), ()),
    "n2n_core/inference imports nothing of training":
        (("n2n_core/inference",), ("n2n_core.training",), ()),
}


@pytest.mark.parametrize("rule", list(RULES))
def test_import_direction(rule: str) -> None:
    folders, forbidden, allowed = RULES[rule]
    assert all((ROOT / f).exists() for f in folders), folders
    assert violations(folders, forbidden, allowed) == [], rule


def test_the_scan_sees_imports_inside_functions_and_relative_ones() -> None:
    """The scanner itself: an import in a function body, and relative ones, are seen and resolved."""
    probe = ROOT / "n2n_core" / "nn" / "_layout_probe.py"  # never written: its text is given
    source = "def f():\n    import torch\n    from ..training import train\n    from . import atomic\n"
    found = [name for _, name in imports(probe, source)]
    assert found == ["torch", "n2n_core.training.train", "n2n_core.nn.atomic"]
