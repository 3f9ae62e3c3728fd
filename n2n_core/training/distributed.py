"""Data-parallel training on ``torch.distributed``: one model, N processes, identical weights on every rank.

There is no autograd here, so there is no DDP wrapper: each rank runs ``forward_and_vjp`` on its
slice of the global batch, then the ranks add their (weighted) ``d_weight`` / ``d_bias`` with one
``all_reduce`` of a single flattened buffer, and every rank takes the same optimizer step.

* Process groups: ``gloo`` on CPU, ``nccl`` on CUDA (one GPU per process, ``cuda:LOCAL_RANK``).
* Ranks come from the environment that ``torchrun`` sets (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
  ``LOCAL_WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``), so several nodes work, or from ``launch``,
  which spawns N local processes with ``MASTER_ADDR=127.0.0.1`` and a free ``MASTER_PORT``.
* Sharding: every rank draws the whole global batch ``i`` from the same ``(seed, i)`` generator (cheap
  next to the network, and exactly reproducible) and keeps rows ``[r*B//N, (r+1)*B//N)``. The MSE
  loss is a mean over the batch, so with ``n_r`` rows on rank ``r``, ``sum_r (n_r / B) g_r`` is exactly
  the single-process gradient: each rank scales its gradients by ``n_r / B`` and the ranks *sum*.
  Uneven slices are therefore fine; only ``B >= N`` is required (no rank may have an empty slice).
* Devices: on CUDA, ``N`` may not exceed the visible GPUs; on CPU, ``N`` may not exceed
  the cores available to the process (more processes than cores would only oversubscribe them) and
  each local process gets ``cores // local processes`` torch threads. Over the limit is a ValueError.
* Children never outlive their launcher: each asks the kernel for ``SIGKILL`` when its parent dies
  (``PR_SET_PDEATHSIG`` on Linux) and exits if its parent is already gone; if one rank fails, the
  launcher stops the others (``torch.multiprocessing``).
* Only rank 0 writes (checkpoints, weights, history, card) and reports progress; see ``Trainer``.
"""

from __future__ import annotations

import os
import pickle
import socket
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import Tensor

from n2n_core.nn.module import Module
from n2n_core.inference.runtime import cores, die_with_parent, set_threads



@dataclass(frozen=True)
class DistContext:
    """Where this process stands: ``rank`` of ``world_size`` (global), ``local_rank`` on its node.

    The single-process context (``SINGLE``) has rank 0 of 1 and makes every collective a no-op.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes files and reports progress."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        """True when there are other ranks to talk to."""
        return self.world_size > 1


SINGLE = DistContext()


# -- contexts ----------------------------------------------------------------------------------------
def context_from_env(env: dict[str, str] | None = None) -> DistContext | None:
    """The context ``torchrun`` (or ``launch``) describes in ``env``; None when ``WORLD_SIZE`` is unset.

    Raises ValueError on inconsistent values (a rank outside [0, WORLD_SIZE), a missing MASTER_ADDR).
    """
    env = os.environ if env is None else env
    if "WORLD_SIZE" not in env:
        return None
    try:
        world = int(env["WORLD_SIZE"])
        rank = int(env.get("RANK", "0"))
        local_rank = int(env.get("LOCAL_RANK", str(rank)))
        local_world = int(env.get("LOCAL_WORLD_SIZE", str(world)))
    except ValueError:
        raise ValueError("RANK, WORLD_SIZE, LOCAL_RANK and LOCAL_WORLD_SIZE must be integers") from None
    if world < 1 or not 0 <= rank < world or not 0 <= local_rank < max(local_world, 1):
        raise ValueError(f"inconsistent torch.distributed environment: RANK={rank}, WORLD_SIZE={world}, "
                         f"LOCAL_RANK={local_rank}, LOCAL_WORLD_SIZE={local_world}")
    if world > 1 and not env.get("MASTER_ADDR"):
        raise ValueError("WORLD_SIZE > 1 needs MASTER_ADDR and MASTER_PORT (torchrun sets them)")
    return DistContext(rank, world, local_rank, local_world)


def max_processes(device_type: str) -> int:
    """How many local processes a device type allows: the visible GPUs for 'cuda', the cores for 'cpu'."""
    if device_type == "cuda":
        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    if device_type == "cpu":
        return cores()
    raise ValueError(f"unsupported device type {device_type!r} for data-parallel training; use cpu or cuda")


def check_nproc(nproc: int, device_type: str) -> None:
    """ValueError unless 1 <= nproc <= max_processes(device_type)."""
    if not isinstance(nproc, int) or nproc < 1:
        raise ValueError(f"nproc_per_node must be an integer >= 1, got {nproc!r}")
    limit = max_processes(device_type)
    if nproc > limit:
        what = f"{limit} visible GPU(s)" if device_type == "cuda" else f"{limit} CPU core(s)"
        raise ValueError(f"nproc_per_node={nproc} is more than this machine's {what}; use at most {limit}")


def device_type_of(name: str) -> str:
    """'cpu' or 'cuda' for a device name such as 'auto', 'cpu', 'cuda' or 'cuda:1'."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    kind = name.split(":", 1)[0]
    if kind not in ("cpu", "cuda"):
        raise ValueError(f"unsupported device {name!r}; use auto, cpu or cuda")
    return kind


def rank_device(ctx: DistContext, device_type: str) -> torch.device:
    """This rank's device: ``cuda:LOCAL_RANK`` (one GPU per process) or the CPU.

    ValueError, alike on every rank of the node, when the node has more processes than GPUs.
    """
    if device_type == "cuda":
        check_nproc(ctx.local_world_size, "cuda")
        return torch.device("cuda", ctx.local_rank)
    return torch.device("cpu")


def init_process_group(ctx: DistContext, device_type: str) -> None:
    """Join the group ``ctx`` describes (env:// rendezvous): nccl on CUDA, gloo on CPU; no group for one rank.

    First checks the node's process count against its devices (ValueError, see ``check_nproc``); on
    CPU the process then limits itself to its share of the node's cores, on CUDA it selects its GPU.
    """
    if device_type == "cpu":
        check_nproc(ctx.local_world_size, "cpu")
        set_threads(max(1, cores() // ctx.local_world_size))
    else:
        torch.cuda.set_device(rank_device(ctx, device_type))
    if not ctx.active or dist.is_initialized():
        return
    dist.init_process_group("nccl" if device_type == "cuda" else "gloo", rank=ctx.rank, world_size=ctx.world_size)


def shutdown() -> None:
    """Leave the process group, if this process is in one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


# -- the training step's collectives -----------------------------------------------------------------
def shard_bounds(batch_size: int, ctx: DistContext) -> tuple[int, int]:
    """Rows [lo, hi) of the global batch that rank ``ctx.rank`` trains on: lo = r*B//N, hi = (r+1)*B//N.

    ValueError when B < N (some rank would have no rows).
    """
    if batch_size < ctx.world_size:
        raise ValueError(f"batch_size {batch_size} is smaller than the {ctx.world_size} processes: "
                         "each process needs at least one row of the global batch")
    return ctx.rank * batch_size // ctx.world_size, (ctx.rank + 1) * batch_size // ctx.world_size


def gradient_tensors(model: Module) -> list[Tensor]:
    """Every distinct stored gradient (``d_weight`` / ``d_bias``) of ``model``, in model order."""
    seen: dict[int, Tensor] = {}
    for m in model.modules():
        for attr in ("d_weight", "d_bias"):
            g = getattr(m, attr)
            if g is not None and g.numel() and id(g) not in seen:
                seen[id(g)] = g
    return list(seen.values())


def reduce_step(model: Module, loss: Tensor, stop: bool, share: float, ctx: DistContext) -> tuple[float, bool]:
    """Combine one step across ranks with a single ``all_reduce(SUM)`` of one flat buffer.

    buffer = [share * g for every gradient g of ``model``] ++ [share * loss, stop]; with
    ``share = n_r / B`` the summed gradients (written back in place) and loss are the global-batch
    mean, exactly what one process computes. Returns (global loss, whether any rank asked to stop).
    With one rank nothing is communicated and ``share`` is 1.
    """
    if not ctx.active:
        return float(loss), bool(stop)
    grads = gradient_tensors(model)
    flag = torch.tensor([1.0 if stop else 0.0], dtype=loss.dtype, device=loss.device)
    parts = [g.reshape(-1).to(loss.dtype) for g in grads] + [loss.reshape(1), flag]
    buf = torch.cat(parts)
    buf[:-1].mul_(share)
    dist.all_reduce(buf, op=dist.ReduceOp.SUM)
    offset = 0
    for g in grads:
        g.copy_(buf[offset: offset + g.numel()].view_as(g))
        offset += g.numel()
    tail = buf[offset:].tolist()
    return tail[0], tail[1] > 0


def broadcast_model(model: Module, ctx: DistContext) -> None:
    """Copy rank 0's parameters to every rank (one flat buffer), so that all start from one state."""
    if not ctx.active:
        return
    params = model.parameters()
    buf = torch.cat([p.reshape(-1) for p in params])
    dist.broadcast(buf, src=0)
    offset = 0
    for p in params:
        p.copy_(buf[offset: offset + p.numel()].view_as(p))
        offset += p.numel()


def barrier(ctx: DistContext) -> None:
    """Wait for every rank (no-op for one rank)."""
    if ctx.active:
        dist.barrier()


# -- local launcher ----------------------------------------------------------------------------------
def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _rank_entry(local_rank: int, fn: Callable[..., Any], nproc: int, port: int, parent_pid: int,
                device_type: str, args: tuple, exchange: str) -> None:
    """Body of a spawned rank: tie to the parent, set the torchrun-style environment, join, run fn.

    Rank 0's result and any rank's ValueError or OSError (pickled) go to files in ``exchange``.
    """
    die_with_parent(parent_pid)
    os.environ.update({"RANK": str(local_rank), "WORLD_SIZE": str(nproc), "LOCAL_RANK": str(local_rank),
                       "LOCAL_WORLD_SIZE": str(nproc), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    ctx = context_from_env()
    assert ctx is not None
    folder = Path(exchange)
    try:
        init_process_group(ctx, device_type)
        out = fn(ctx, *args)
        if ctx.is_main:
            (folder / "result.pkl").write_bytes(pickle.dumps(out))
    except (ValueError, OSError) as e:  # the launcher re-raises it
        try:
            payload = pickle.dumps(e)
        except Exception:  # noqa: BLE001 - an exception that does not pickle travels as its message
            payload = pickle.dumps(ValueError(str(e)))
        (folder / f"error-{ctx.rank}.pkl").write_bytes(payload)
        raise
    finally:
        shutdown()


def launch(fn: Callable[..., Any], nproc: int, args: tuple = (), device_type: str = "cpu") -> Any:
    """Run ``fn(ctx, *args)`` in ``nproc`` spawned local processes, one per rank, and return rank 0's result.

    ``fn``, ``args`` and the result must be picklable (``fn`` a module-level function). Each process has
    the torchrun-style environment (MASTER_ADDR=127.0.0.1, a free MASTER_PORT) and has joined the
    process group before ``fn`` runs. A ValueError or OSError in a rank (the lowest rank's, when
    several fail) is raised here as such (e.g. ``TrainingDiverged``); any other failure stops every
    rank and raises RuntimeError.
    """
    check_nproc(nproc, device_type)
    with tempfile.TemporaryDirectory(prefix="n2n-ranks-") as exchange:
        folder = Path(exchange)
        try:
            mp.start_processes(_rank_entry, args=(fn, nproc, free_port(), os.getpid(), device_type, tuple(args),
                                                  exchange), nprocs=nproc, join=True, start_method="spawn")
        except mp.ProcessRaisedException as e:
            errors = sorted(folder.glob("error-*.pkl"), key=lambda f: int(f.stem.split("-")[1]))
            if errors:
                raise pickle.loads(errors[0].read_bytes()) from None
            raise RuntimeError(f"a data-parallel process failed:\n{e}") from None
        except mp.ProcessExitedException as e:
            raise RuntimeError(f"a data-parallel process died: {e}") from None
        result = folder / "result.pkl"
        return pickle.loads(result.read_bytes()) if result.exists() else None
