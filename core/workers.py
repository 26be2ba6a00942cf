"""Independent CPU work (one synthetic case, one case's preprocessing) spread over processes.

Generating the demo cohort and preprocessing it are numpy and zlib work that one Python
process does on one core; the demo's machine has two. Each unit must be independent of the
others and of the process it runs in (a case is drawn from its own seeded stream, written
atomically), so results are the same bytes whichever way they are run.

Workers are forked, on Linux only (multiprocessing's default there before Python 3.14):
``spawn`` would run the caller's main script again in each worker, which a script without
an ``if __name__ == "__main__"`` guard (or ``python -`` on standard input) cannot survive,
and fork is unsafe on macOS. The units use numpy, scipy and zlib only, never torch's thread
pool, so a parent that has run torch is safe to fork. Elsewhere everything runs in this
process.

Workers ignore Ctrl-C: an interrupted parent cancels the units not yet handed out and waits
for those in progress (a few seconds), so no file is left half-written; what was written
stays, the rest is done on the next run.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from typing import TypeVar

from tumorscope.core.errors import ConfigError

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

WORKERS_ENV = "TUMORSCOPE_WORKERS"
"""Environment variable capping the worker processes (1: everything in this process)."""

MIN_ITEMS = 3
"""Fewer units than this run in this process: a pool is not worth it for one or two."""


def usable_cpus() -> int:
    """CPU cores this process may run on (its affinity, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _cap() -> int:
    raw = os.environ.get(WORKERS_ENV, "").strip()
    if not raw:
        return usable_cpus()
    if not raw.isdigit() or int(raw) < 1:
        raise ConfigError(f"{WORKERS_ENV} must be a whole number of worker processes >= 1 "
                          f"(1: none, all in this process), got {raw!r}")
    return int(raw)


def worker_count(n_items: int) -> int:
    """How many processes ``n_items`` units get: one per usable core, at most one per unit,
    capped by ``TUMORSCOPE_WORKERS``; 1 (no worker at all) below :data:`MIN_ITEMS` units
    or off Linux.

    >>> worker_count(1)
    1
    """
    if n_items < MIN_ITEMS or not sys.platform.startswith("linux"):
        return 1
    return max(1, min(n_items, usable_cpus(), _cap()))


def _ignore_interrupts() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def each_in_workers(fn: Callable[[T], R], items: Sequence[T]
                    ) -> Iterator[tuple[T, R | Exception]]:
    """``(item, fn(item))`` for every item as each finishes (the exception raised instead
    of a result, if any); in this process when one worker would do. ``fn`` must be a
    module-level function (or a partial of one) and items picklable."""
    n = worker_count(len(items))
    if n <= 1:
        for item in items:
            try:
                yield item, fn(item)
            except Exception as exc:  # handed to the caller, as a worker's would be
                yield item, exc
        return
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=n, mp_context=context,
                             initializer=_ignore_interrupts) as pool:
        futures: dict[Future[R], T] = {pool.submit(fn, item): item for item in items}
        try:
            for future in as_completed(futures):
                error = future.exception()
                yield futures[future], (future.result() if error is None else error)
        except BaseException:
            running = sum(not f.done() and f.running() for f in futures)
            log.warning("interrupted: waiting for the %d unit(s) in progress to finish",
                        running)
            pool.shutdown(wait=True, cancel_futures=True)
            raise
