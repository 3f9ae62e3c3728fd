"""release_memory: the heap that tune_allocator keeps is handed back (issue 22, RSS after a burst)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent("""
    import torch
    from n2n_core.inference.runtime import release_memory, tune_allocator

    def rss():
        for line in open("/proc/self/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024

    assert tune_allocator()
    base = rss()
    blocks = [torch.ones(1 << 20) for _ in range(64)]  # 256 MiB in 4 MiB blocks, all below the mmap threshold
    held = rss()
    del blocks
    kept = rss()  # freed, but kept by the allocator (trim threshold 1 GiB)
    assert release_memory()
    print(base, held, kept, rss())
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc and /proc only")
def test_release_memory_hands_the_kept_heap_back():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300, check=True)
    base, held, kept, released = map(int, out.stdout.split())
    MiB = 1024 * 1024
    assert held - base > 200 * MiB
    assert kept - base > 200 * MiB, "the tuned allocator kept nothing: this test no longer shows a release"
    assert released - base < 64 * MiB
