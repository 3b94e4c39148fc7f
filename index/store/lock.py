"""One build at a time per index, across processes: an flock beside the index folder."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

from index.errors import BuildBusyError, IndexWriteError


@contextlib.contextmanager
def build_lock(index_dir: Path, on_wait: Callable[[], None] | None = None, wait: bool = True) -> Iterator[None]:
    """One build at a time per index, across processes (an flock on ``.<index>.lock`` beside it).

    A second builder calls ``on_wait`` and waits, or with ``wait=False`` gets BuildBusyError at once.
    The lock is released by the OS when the process dies, so a killed build never blocks the next one.
    """
    import fcntl

    index_dir = Path(index_dir)
    try:
        index_dir.parent.mkdir(parents=True, exist_ok=True)
        lock_path = index_dir.parent / f".{index_dir.name}.lock"
        fh = open(lock_path, "a+b")  # noqa: SIM115 - held for the whole build, closed in the finally below
    except OSError as exc:
        raise IndexWriteError(index_dir, exc.strerror or str(exc)) from exc
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                raise BuildBusyError(index_dir) from None
            if on_wait is not None:
                on_wait()
            fcntl.flock(fh, fcntl.LOCK_EX)
        yield
    finally:
        fh.close()  # closing releases the lock
