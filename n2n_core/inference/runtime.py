"""Process-wide settings that decide how fast the CPU path runs: the allocator and the thread count."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import signal
import sys

import torch

_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
ORPHANED_EXIT_CODE = 75  # a child process that found its parent gone


def _libc_function(name: str):
    """The C library's function ``name`` (ctypes), or None where it or a glibc-like C library is missing."""
    library = ctypes.util.find_library("c")
    if not library or os.name != "posix":
        return None
    try:
        return getattr(ctypes.CDLL(library), name)
    except (OSError, AttributeError):
        return None


@functools.cache
def tune_allocator() -> bool:
    """Keep large blocks in glibc's heap instead of fresh ``mmap`` pages.

    Every activation of a network on a big tile is a large allocation; by default glibc maps each
    one afresh and the kernel zeroes its pages on first touch, which costs a third of the run time
    of a 512x512 denoise. With large blocks kept and reused (mmap threshold and trim threshold 1 GiB,
    256 MiB top pad) that cost is paid once per process. Returns False where glibc is not the C library.
    """
    mallopt = _libc_function("mallopt")
    if mallopt is None:
        return False
    return all(mallopt(option, value) == 1 for option, value in
               ((_M_MMAP_THRESHOLD, 1 << 30), (_M_TRIM_THRESHOLD, 1 << 30), (_M_TOP_PAD, 256 << 20)))


@functools.cache
def _malloc_trim():
    """glibc's ``malloc_trim``, or None where the C library has none."""
    trim = _libc_function("malloc_trim")
    if trim is None:
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


def release_memory() -> bool:
    """Hand the C heap's free memory back to the kernel: ``malloc_trim(0)`` (glibc), which walks every
    arena (one per thread that allocated, up to 8 per core) and returns whole free pages, the top of
    each heap and the pages inside it.

    ``tune_allocator`` keeps up to 1 GiB of freed blocks in the heap so that the next large tensor
    reuses them rather than faulting fresh zeroed pages; after a burst of work that is memory a
    process holds while it does nothing. Call this when work has gone idle (a service: when its queue
    has been empty a while), not between two pieces of work: the next one pays the page faults again.
    Returns False where glibc is not the C library (nothing done).
    """
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


def set_threads(threads: int | None) -> int:
    """Use ``threads`` intra-op threads (None or 0: leave torch's choice); returns the count in force."""
    if threads and threads != torch.get_num_threads():
        torch.set_num_threads(max(1, int(threads)))
    return torch.get_num_threads()


def serial_thread() -> None:
    """Run the calling thread's torch operations on one thread.

    OpenMP's and MKL's thread counts are per calling thread. A thread that once ran a parallel region
    with several threads keeps an OpenMP team whose workers count against the cores; libgomp then
    spins only briefly between regions in every team, and the thread that does the real work (a
    service's tile thread) loses about a third of its speed on many small GEMMs (measured on 2 cores:
    0.63 s against 0.44 s for a 512x512 denoise). Call this first in every thread that only decodes,
    encodes or loads (before any torch operation in it), so that only the working thread has a team.
    """
    if torch.get_num_threads() != 1:
        torch.set_num_threads(1)


def cores() -> int:
    """The cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def split_threads(total: int, training: bool, train_threads: int | None = None) -> tuple[int, int]:
    """(denoise threads, training threads) for one host: while a training job runs beside the service,
    it gets ``train_threads`` (default half the cores) and denoising the rest; otherwise denoising gets all."""
    train = max(1, min(total - 1, train_threads or total // 2)) if total > 1 else 1
    return (max(1, total - train), train) if training else (total, train)


def die_with_parent(parent_pid: int) -> None:
    """Have the kernel SIGKILL this process when its parent exits (Linux), then exit at once if the
    parent is no longer ``parent_pid`` (it may have died before the request took effect).

    The signal follows the parent *thread* that started this process. Elsewhere (no prctl) callers
    keep a parent-liveness check of their own.
    """
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:
        os._exit(ORPHANED_EXIT_CODE)
