"""Data-parallel fine-tuning over several processes: setup, teardown and the few collectives used.

The study fine-tuned on two V100s; a paper-scale Serengeti epoch on one GPU takes hours, so the
loop (:func:`camtrap_ssl.train.finetune.finetune`) runs unchanged under ``torchrun`` and detects the
process group by itself. This module keeps everything about process groups in one place:

* :func:`init_from_env` for ``torchrun`` (it sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
  ``MASTER_ADDR``, ``MASTER_PORT``); :func:`init` for an explicit rank (``torch.multiprocessing``),
  used by :func:`launch` and the tests. Backend ``nccl`` on CUDA (one GPU per process, chosen by
  local rank), ``gloo`` on CPU.
* :func:`context` describes the current process (a one-process context when no group exists), so
  the training loop has a single code path.
* :func:`main_first` runs a step (pretraining an embedded backbone, fetching weights, preparing a
  data cache) on rank 0 before the others, so ranks never race to write the same cache file.

The ``torchrun`` entry point is :mod:`camtrap_ssl.experiments.launch`.
"""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import Callable

import torch
import torch.distributed as dist

BACKENDS = ("nccl", "gloo")


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def default_backend() -> str:
    return "nccl" if torch.cuda.is_available() else "gloo"


def _device_for(backend: str, local_rank: int) -> torch.device:
    if backend == "nccl":
        if not torch.cuda.is_available():
            raise ValueError("backend='nccl' needs CUDA; use backend='gloo' on CPU")
        if local_rank >= torch.cuda.device_count():
            raise ValueError(f"local rank {local_rank} has no GPU ({torch.cuda.device_count()} "
                             "visible); start at most one process per GPU")
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def context() -> DistContext:
    """The current process's rank, world size and device (world size 1 without a group)."""
    if not (dist.is_available() and dist.is_initialized()):
        return DistContext()
    backend = dist.get_backend()
    local_rank = int(os.environ.get("LOCAL_RANK", dist.get_rank()))
    device = torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")
    return DistContext(dist.get_rank(), dist.get_world_size(), local_rank, backend, device)


def init(rank: int, world_size: int, master_port: int, master_addr: str = "127.0.0.1",
         backend: str | None = None, local_rank: int | None = None) -> DistContext:
    """Join a process group with an explicit rank (what ``torchrun`` would set up)."""
    backend = backend or default_backend()
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r}; allowed: {list(BACKENDS)}")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank={rank} must lie in [0, world_size={world_size})")
    local_rank = rank if local_rank is None else local_rank
    device = _device_for(backend, local_rank)
    os.environ["LOCAL_RANK"] = str(local_rank)
    dist.init_process_group(backend, init_method=f"tcp://{master_addr}:{master_port}",
                            rank=rank, world_size=world_size)
    return DistContext(rank, world_size, local_rank, backend, device)


def init_from_env(backend: str | None = None) -> DistContext:
    """Join the group ``torchrun`` describes in the environment; a no-op context without one."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return DistContext()
    if dist.is_initialized():
        return context()
    backend = backend or default_backend()
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r}; allowed: {list(BACKENDS)}")
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    device = _device_for(backend, local_rank)
    dist.init_process_group(backend)
    return DistContext(dist.get_rank(), dist.get_world_size(), local_rank, backend, device)


def teardown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (for a local group)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def broadcast_object(obj, src: int = 0):
    """Rank ``src``'s Python object on every rank."""
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def main_first(fn: Callable, *args, **kwargs):
    """``fn(*args, **kwargs)`` on rank 0, then (after a barrier) on the others.

    For steps that fill a cache on first use: rank 0 writes it, the others then read it.
    """
    ctx = context()
    if ctx.world_size == 1:
        return fn(*args, **kwargs)
    out = fn(*args, **kwargs) if ctx.is_main else None
    barrier()
    if not ctx.is_main:
        out = fn(*args, **kwargs)
    barrier()
    return out


def _spawned(rank: int, world_size: int, port: int, backend: str, fn: Callable, args: tuple):
    init(rank, world_size, port, backend=backend)
    try:
        fn(rank, *args)
    finally:
        teardown()


def launch(fn: Callable, world_size: int, *args, backend: str | None = None) -> None:
    """Run ``fn(rank, *args)`` in ``world_size`` fresh processes joined in one group.

    ``fn`` must be importable (a module-level function). One node, ``127.0.0.1``, a free port.
    Raises if any process fails.
    """
    if world_size < 1:
        raise ValueError(f"world_size={world_size} must be >= 1")
    backend = backend or default_backend()
    import torch.multiprocessing as mp

    mp.spawn(_spawned, args=(world_size, free_port(), backend, fn, args), nprocs=world_size,
             join=True)

