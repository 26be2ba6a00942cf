"""Independent CPU work (one synthetic case, one case's preprocessing) spread over processes.

Generating the demo cohort and preprocessing it are numpy and zlib work that one Python
process does on one core; the demo's machine has two. Each unit must be independent of the
others and of the process it runs in (a case is drawn from its own seeded stream, written
atomically), so results are the same bytes whichever way they are run.

Workers are forked (Linux), as multiprocessing's default there: ``spawn`` would run the
caller's main script again in each worker, which a script without an ``if __name__ ==
"__main__"`` guard (or ``python -`` on standard input) cannot survive. The units use numpy,
scipy and zlib only, never torch's thread pool, so a parent that has run torch is safe to
fork. Where fork is not offered (macOS, Windows) everything runs in this process.
An interrupted parent takes its workers with it (they share its terminal's Ctrl-C, and the
pool waits for them); what they had written completely stays, the rest is redone next time.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

WORKERS_ENV = "TUMORSCOPE_WORKERS"
"""Environment variable capping the worker processes (1: everything in this process)."""

MIN_ITEMS = 3
"""Fewer units than this run in this process: starting a worker costs about a second."""


def usable_cpus() -> int:
    """CPU cores this process may run on (its affinity, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def worker_count(n_items: int) -> int:
    """How many processes ``n_items`` units get: one per usable core, at most one per unit,
    capped by ``TUMORSCOPE_WORKERS``; 1 (no worker at all) below :data:`MIN_ITEMS` units.

    >>> worker_count(1)
    1
    """
    if n_items < MIN_ITEMS or "fork" not in multiprocessing.get_all_start_methods():
        return 1
    cap = os.environ.get(WORKERS_ENV, "").strip()
    limit = int(cap) if cap.isdigit() and int(cap) > 0 else usable_cpus()
    return max(1, min(n_items, usable_cpus(), limit))


def each_in_workers(fn: Callable[[T], R], items: Sequence[T], *,
                    workers: int | None = None) -> Iterator[tuple[T, R | BaseException]]:
    """``(item, fn(item))`` for every item as each finishes (the exception raised instead
    of a result, if any); in this process when one worker would do. ``fn`` must be a
    module-level function and items picklable."""
    n = worker_count(len(items)) if workers is None else max(1, min(workers, len(items)))
    if n <= 1:
        for item in items:
            try:
                yield item, fn(item)
            except Exception as exc:  # handed to the caller, as a worker's would be
                yield item, exc
        return
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=n, mp_context=context) as pool:
        futures: dict[Future[R], T] = {pool.submit(fn, item): item for item in items}
        try:
            for future in as_completed(futures):
                error = future.exception()
                yield futures[future], (future.result() if error is None else error)
        except BaseException:
            for future in futures:
                future.cancel()
            raise

