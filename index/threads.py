"""Thread budgets, so the process never runs more busy threads than the machine has cores.

BLAS and OpenMP pools default to one thread per core *per pool*, and their threads spin while waiting:
with the bot's worker threads (or another busy process) on the same cores they fight, and a question
that takes 10 ms alone took 336 ms (issue 8). So:

* answering a question is a handful of small matrix products: each worker runs them on one thread
  (``serving``), and the workers themselves are the parallelism;
* a build embeds thousands of texts: it gets the cores that answering workers leave free
  (``build_threads``), torch's intra-op pool for the bulk path, BLAS for the NumPy path when nothing
  else in the process is answering.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterator

_lock = threading.Lock()
_budget = {"blas": 0, "torch": 0}  # 0: not set yet (library defaults)


def cores() -> int:
    """Cores this process may run on (its CPU affinity, not the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _apply() -> None:
    from threadpoolctl import threadpool_limits

    if _budget["blas"]:
        threadpool_limits(limits=_budget["blas"], user_api="blas")
        threadpool_limits(limits=_budget["blas"], user_api="openmp")
    apply_torch()


def apply_torch() -> None:
    """Give torch its budget (called again by the embedder that imports torch late)."""
    if _budget["torch"] and "torch" in sys.modules:
        import torch

        if torch.get_num_threads() != _budget["torch"]:
            torch.set_num_threads(_budget["torch"])


def serving() -> None:
    """One BLAS/OpenMP/torch thread per answering worker (see the module doc)."""
    with _lock:
        _budget.update(blas=1, torch=1)
        _apply()


#: Texts a thread must have to embed before a build takes another: below it, starting and spinning a pool
#: costs more than it saves, and on a busy machine far more (41 new texts took 52 s on every core beside
#: another build, 1.8 s on one thread: issue 19).
TEXTS_PER_THREAD = 512


def threads_for(work: int | None, busy: int = 0) -> int:
    """Threads for embedding ``work`` texts: the cores ``busy`` answering workers leave, and no more than
    one per ``TEXTS_PER_THREAD`` texts (None: as many as are free)."""
    free = max(1, cores() - busy)
    return free if work is None else max(1, min(free, -(-int(work) // TEXTS_PER_THREAD)))


@contextlib.contextmanager
def build_threads(busy: int = 0, work: int | None = None) -> Iterator[dict[str, int]]:
    """Within: threads for embedding ``work`` texts (``threads_for``); after: the budget as before.

    BLAS pools are process-wide, so while workers answer (``busy`` > 0) BLAS stays at one thread and only
    torch (the bulk path) gets the free cores.
    """
    with _lock:
        before = dict(_budget)
        free = threads_for(work, busy)
        _budget.update(torch=free, blas=free if busy == 0 else 1)
        _apply()
        granted = dict(_budget)
    try:
        yield granted
    finally:
        with _lock:
            _budget.update(before)
            if before["blas"]:
                _apply()


def budget() -> dict[str, int]:
    """The current budget (0 = library default), for `herald info` and tests."""
    return dict(_budget)
