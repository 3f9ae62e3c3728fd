"""A training process's ties to its worker, and processes seen through /proc.

The heartbeat renews a running job's lease and ends the training process once the worker that started
it is gone. On Linux, /proc names a live process for good by its pid and start time: the scheduler
uses it to find a job's worker, tell whether it was orphaned, and kill it. Elsewhere nothing is ever
found, so nothing is killed.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from n2n_core.inference.runtime import ORPHANED_EXIT_CODE

from app.store import JobRow, JobStore

HEARTBEAT_SECONDS = 2.0
PARENT_CHECK_SECONDS = 0.5  # how often a worker checks that the process that started it is still there


# -- the worker's ties to its parent -------------------------------------------------------------
def orphaned_exit() -> None:
    os._exit(ORPHANED_EXIT_CODE)  # no cleanup: checkpoints are atomic, the next service resumes the job


def heartbeat(store: JobStore, job_id: str, halt: threading.Event, parent_pid: int | None,
              interval: float = HEARTBEAT_SECONDS, orphaned: Callable[[], None] = orphaned_exit,
              lease: str | None = None, lost: threading.Event | None = None) -> None:
    """Renew the job's lease every ``interval`` seconds; end the process (``orphaned()``) as soon as its
    parent is no longer ``parent_pid`` (None: no parent check). With a ``lease`` token, set ``lost`` once
    the job no longer runs under it (another worker reclaimed it): the training then stops."""
    next_beat = time.monotonic() + interval
    while not halt.wait(min(PARENT_CHECK_SECONDS, interval)):
        if parent_pid is not None and os.getppid() != parent_pid:
            orphaned()
            return
        if time.monotonic() >= next_beat:
            next_beat = time.monotonic() + interval
            try:
                held = store.heartbeat(job_id, lease)
            except Exception:  # noqa: BLE001 - a missed beat is retried; the lease tolerates several
                continue
            if lease is not None and not held and lost is not None:
                lost.set()


# -- processes seen through /proc (Linux); elsewhere nothing is ever found, so nothing is killed -----
@dataclass(frozen=True)
class ProcInfo:
    pid: int
    ppid: int
    start: int  # clock ticks after boot: with the pid, it names one process for good


def proc_info(pid: int) -> ProcInfo | None:
    """The live process ``pid``; None when there is none (gone, a zombie, or no /proc)."""
    try:
        stat = Path(f"/proc/{int(pid)}/stat").read_text()
        fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) "
        if fields[0] in ("Z", "X", "x"):
            return None
        return ProcInfo(int(pid), int(fields[1]), int(fields[19]))
    except (OSError, ValueError, IndexError):
        return None


def process_start(pid: int) -> int | None:
    info = proc_info(pid)
    return info.start if info else None


def job_worker(job: JobRow) -> ProcInfo | None:
    """The job's recorded worker process when it is still alive here, else None.

    A pid counts only when its start time is the one recorded when the worker started (a reused pid
    is another process). Rows from before start times were recorded need the command line of a
    multiprocessing 'spawn' child of this Python instead.
    """
    pid = job.worker_pid
    info = proc_info(pid) if pid else None
    if info is None:
        return None
    if job.worker_start is not None:
        return info if info.start == job.worker_start else None
    try:
        argv = Path(f"/proc/{info.pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    spawned = argv[0] == os.fsencode(sys.executable) and any(b"spawn_main" in a for a in argv)
    return info if spawned and b"--multiprocessing-fork" in argv else None


def is_orphaned(job: JobRow, worker: ProcInfo) -> bool:
    """Whether the job's live worker lost the process that started it (it was re-parented)."""
    if job.worker_parent is None:  # rows from before parents were recorded: re-parented to init
        return worker.ppid == 1 and os.getpid() != 1
    return worker.ppid != job.worker_parent


def kill_process(info: ProcInfo, wait: float = 60.0) -> bool:
    """SIGKILL the process ``info`` names and wait until it is gone; False when it could not be stopped."""
    pidfd = None
    try:
        pidfd = os.pidfd_open(info.pid)  # pins the process: its pid cannot be reused under us
    except (AttributeError, OSError):
        pass  # gone already, or no pidfd here: checked again just below
    try:
        now = proc_info(info.pid)
        if now is None or now.start != info.start:
            return True
        if pidfd is not None:
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        else:
            os.kill(info.pid, signal.SIGKILL)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    finally:
        if pidfd is not None:
            os.close(pidfd)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        now = proc_info(info.pid)
        if now is None or now.start != info.start:
            return True
        time.sleep(0.05)
    return False
