"""README.md's commands run as written in a fresh shell from the repository root once `make serve` or
`make test` has made .venv: no bare `n2n`, `python` or `uvicorn` that only an activated venv would find, every
`make` target exists, and every script named is there."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
VENV_ONLY = {"n2n", "python", "python3", "uvicorn", "torchrun", "pytest", "alembic", "pip"}
ENV_ASSIGNMENT = re.compile(r"^[A-Z_][A-Z0-9_]*=\S*$")


def shell_blocks(text: str) -> list[str]:
    """The bodies of the ```bash code blocks of a Markdown text."""
    return re.findall(r"^```bash\n(.*?)^```", text, flags=re.S | re.M)


def commands(block: str) -> list[list[str]]:
    """The simple commands of a shell block, as words: comments dropped, continuation lines joined, split on
    ;, &&, || and |, leading VAR=value assignments skipped."""
    text = re.sub(r"\\\n", " ", block)
    out = []
    for line in text.splitlines():
        line = re.sub(r"(^|\s)#.*$", "", line)
        for part in re.split(r";|&&|\|\||\||&(?=\s|$)|\$\(", line):
            words = [w for w in part.split() if w]
            while words and ENV_ASSIGNMENT.match(words[0]):
                words = words[1:]
            if words:
                out.append(words)
    return out


def test_the_first_block_is_the_two_setup_commands():
    assert [c[:2] for c in commands(shell_blocks(README)[0])] == [["make", "serve"], ["make", "test"]]


def test_no_command_needs_an_activated_venv():
    bare = [" ".join(c) for block in shell_blocks(README) for c in commands(block) if c[0] in VENV_ONLY]
    inline = re.findall(r"`((?:python3?|uvicorn|torchrun|pytest) [^`]*)`", README)
    assert not bare and not inline, bare + inline


def test_make_targets_and_scripts_named_exist():
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][\w-]*):", makefile, flags=re.M))
    named = set(re.findall(r"\bmake ([a-z][\w-]*)", README))
    assert named and named <= targets, named - targets
    scripts = set(re.findall(r"\b((?:benchmarks|deploy/nginx)/[\w-]+\.(?:py|sh))\b", README))
    assert scripts and not [s for s in scripts if not (ROOT / s).is_file()]
