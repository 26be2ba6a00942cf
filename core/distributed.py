"""One command over several processes (``torchrun``): the process group, case shards, barriers.

Every command that runs under ``torchrun`` (train, predict, evaluate) joins the group
here, takes its share of the cases with :meth:`DistInfo.shard` and meets the other ranks
with :meth:`DistInfo.gather` / :meth:`DistInfo.barrier`. Outside ``torchrun`` (no
``WORLD_SIZE`` or ``WORLD_SIZE=1``) nothing here imports torch: a single ``evaluate`` starts
without it, and :class:`DistInfo` is then one process whose collectives return at once.

>>> shard(["A", "B", "C", "D", "E"], rank=1, world_size=2)
['B', 'D']
>>> unshard([["A", "C", "E"], ["B", "D"]])
['A', 'B', 'C', 'D', 'E']
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from tumorscope.core.errors import ConfigError

if TYPE_CHECKING:
    import torch

T = TypeVar("T")

_cpu_group: Any = None
"""The gloo group barriers and Python objects go over when the default group is NCCL (an
NCCL collective needs its data on a GPU); ``None`` means the default group (gloo)."""


def shard(items: Sequence[T], *, rank: int, world_size: int) -> list[T]:
    """Rank ``rank``'s share of ``items``: every ``world_size``-th from position ``rank``
    (``items[rank::world_size]``), so shares differ by at most one item and are the same on
    every run of the same sorted list."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ConfigError(f"rank must be in 0..world_size-1 and world_size >= 1, got rank "
                          f"{rank} of world_size {world_size}")
    return list(items[rank::world_size])


def unshard(parts: Sequence[Sequence[T]]) -> list[T]:
    """The shares of :func:`shard`, listed by rank, back in their original order."""
    world = len(parts)
    total = sum(len(p) for p in parts)
    if any(len(p) != len(range(r, total, world)) for r, p in enumerate(parts)):
        raise ConfigError(f"shares of sizes {[len(p) for p in parts]} are not the shares of "
                          f"one list of {total} items over {world} ranks")
    return [parts[i % world][i // world] for i in range(total)]


def world_size_from_env() -> int:
    """``WORLD_SIZE`` as ``torchrun`` sets it; 1 when it is not set (one process)."""
    raw = os.environ.get("WORLD_SIZE", "1")
    try:
        world = int(raw)
    except ValueError:
        world = 0
    if world < 1:
        raise ConfigError(f"environment variable WORLD_SIZE must be a whole number >= 1 (the "
                          f"number of processes torchrun started), got {raw!r}")
    return world


@dataclass(frozen=True)
class DistInfo:
    """This process's place among the ranks of one command (rank 0 of 1 outside torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0: the one that writes what is written once (summaries, checkpoints)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def tag(self) -> str:
        """``[rank 1/4]`` (the prefix of a rank's own progress lines); ``""`` when alone."""
        return f"[rank {self.rank}/{self.world_size}]" if self.distributed else ""

    def shard(self, items: Sequence[T]) -> list[T]:
        """This rank's share of ``items`` (:func:`shard`); all of them when alone."""
        return shard(items, rank=self.rank, world_size=self.world_size)

    def gather(self, obj: Any) -> list[Any]:
        """``obj`` of every rank, by rank, on every rank (picklable objects; a collective:
        every rank must call it, in the same order)."""
        if not self.distributed:
            return [obj]
        import torch.distributed as dist

        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj, group=_cpu_group)
        return out

    def gather_in_order(self, mine: Sequence[T]) -> list[T]:
        """Every rank's results of its :meth:`shard`, merged back into the original order."""
        return unshard(self.gather(list(mine))) if self.distributed else list(mine)

    def barrier(self) -> None:
        """Wait until every rank is here (no-op when alone)."""
        if self.distributed:
            import torch.distributed as dist

            dist.barrier(group=_cpu_group)

    def device(self, device: torch.device) -> torch.device:
        """The GPU of this rank (``LOCAL_RANK``) when ``device`` is CUDA under torchrun: one
        GPU per process; ``device`` as it is otherwise."""
        if self.distributed and device.type == "cuda":
            import torch

            return torch.device("cuda", self.local_rank)
        return device


def cpu_group() -> Any:
    """The group for collectives on CPU tensors (see :data:`_cpu_group`)."""
    return _cpu_group


def init(device: str = "cpu") -> DistInfo:
    """Join ``torchrun``'s process group when ``WORLD_SIZE`` > 1 and say where this process
    stands; one process (:class:`DistInfo` ``()``) otherwise, without importing torch.

    The backend is NCCL when ``device`` asks for CUDA (``auto``, ``cuda``, ``cuda:N``) and a
    GPU is there, else gloo; ``evaluate`` passes ``cpu`` and never touches CUDA. A process
    already in the group gets its place in it again.
    """
    global _cpu_group
    if world_size_from_env() <= 1:
        return DistInfo()
    import torch
    import torch.distributed as dist

    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        use_cuda = device.split(":")[0] in ("auto", "cuda") and torch.cuda.is_available()
        if use_cuda:  # NCCL binds each rank to the GPU current when the group starts
            torch.cuda.set_device(local_rank)
        try:
            dist.init_process_group("nccl" if use_cuda else "gloo")
        except (ValueError, RuntimeError) as exc:  # WORLD_SIZE set by hand, no rendezvous
            raise ConfigError(f"WORLD_SIZE is {world_size_from_env()} but this process could "
                              f"not join the others ({exc}); start several processes with "
                              "torchrun, or unset WORLD_SIZE for one") from None
        _cpu_group = dist.new_group(backend="gloo") if use_cuda else None
    return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank)


def shutdown() -> None:
    """Leave the process group at the end of a command (nothing when not in one)."""
    global _cpu_group
    if world_size_from_env() <= 1:
        return
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()
    _cpu_group = None


@contextlib.contextmanager
def joined(device: str = "cpu") -> Iterator[DistInfo]:
    """:func:`init` for the length of a command, then :func:`shutdown`."""
    info = init(device)
    try:
        yield info
    finally:
        shutdown()
