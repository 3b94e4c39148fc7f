"""Writing an index: a fresh folder beside it, swapped into place with a journal, and the cleanup of
what interrupted builds left. A failed build never harms the old index; readers never change the disk.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np

from index.errors import HeraldError, IndexPathError, IndexWriteError
from index.store.records import CATALOG, MANIFEST, RECORD_FILES, is_index_file
from index.store.segments import file_digest, write_records
from index.store.vectors import VectorStore

log = logging.getLogger(__name__)


def _journal(index_dir: Path) -> Path:
    return index_dir.parent / f".{index_dir.name}.swap"


def _recover_interrupted_swap(index_dir: Path) -> None:
    """If a crash fell between the two renames of a swap, put the previous index back.

    Only a swap's journal (written before the first rename, removed after the second) says a swap was
    interrupted: an ``.old-*`` folder left because it could not be deleted must never bring a stale index
    back after the user removed the index on purpose. Called by builds, under the build lock; readers
    never change the disk.
    """
    journal = _journal(index_dir)
    if not journal.exists():
        return
    try:
        old = index_dir.parent / journal.read_text(encoding="utf-8").strip()
    except OSError:
        return
    if (not os.path.lexists(index_dir) and old.name.startswith(f".{index_dir.name}.old-")
            and old.is_dir() and not old.is_symlink()):
        os.replace(old, index_dir)
        log.warning("restored the previous index at %s after an interrupted swap", index_dir)
    journal.unlink(missing_ok=True)


def _discard(path: Path) -> bool:
    """Delete a folder of ours, making read-only parts writable first; True when it is gone.

    Never follows a link: a link named like our leftovers is removed itself, and only folders inside
    ``path`` are ever made writable (never its parent, never what a link points to)."""
    if os.path.islink(path) or not os.path.isdir(path):
        with contextlib.suppress(OSError):
            os.unlink(path)
        return not os.path.lexists(path)
    top = os.path.abspath(path)

    def make_writable(func, p, _exc) -> None:
        try:
            parent = os.path.dirname(os.path.abspath(p))
            if (parent == top or parent.startswith(top + os.sep)) and not os.path.islink(parent):
                os.chmod(parent, 0o700)
            if os.path.isdir(p) and not os.path.islink(p):  # never a file: it may be linked into the new index
                os.chmod(p, 0o700)
            func(p)
        except OSError:
            pass

    shutil.rmtree(path, onerror=make_writable)
    return not os.path.lexists(path)


def clean_leftovers(index_dir: Path) -> list[str]:
    """Remove what interrupted builds left beside the index (temporary folders, set-aside old indexes).

    Call only under the build lock: then no other build is writing any of them. Returns the names left
    that could not be removed (logged).
    """
    index_dir = Path(index_dir)
    if not index_dir.parent.is_dir():
        return []
    _recover_interrupted_swap(index_dir)
    stuck = []
    for p in sorted(index_dir.parent.glob(f".{index_dir.name}.tmp-*")) + sorted(
            index_dir.parent.glob(f".{index_dir.name}.old-*")):
        if not _discard(p):
            stuck.append(p.name)
            log.warning("could not remove %s (left by an earlier build)", p)
    return stuck


def check_replaceable(index_dir: Path) -> None:
    """A build replaces ``index_dir`` wholesale, so it must be an index (or nothing): a mistyped
    index folder must never delete a user's folder."""
    index_dir = Path(index_dir)
    if not os.path.lexists(index_dir):
        return
    if index_dir.is_symlink() or not index_dir.is_dir():
        raise IndexPathError("not_folder", index_dir)
    foreign = sorted(p.name for p in index_dir.iterdir() if not is_index_file(p.name))
    if foreign:
        raise IndexPathError("foreign", index_dir, foreign)


def write_index(index_dir: Path, manifest: dict, catalog: dict[str, dict], docs: list[dict], chunks: list[dict],
                store: VectorStore, sentences: np.ndarray) -> None:
    """Write a whole index (the base and its catalog: index/store/segments.py) into a fresh folder, then swap it
    into place."""

    def fill(tmp: Path) -> list[str]:
        (tmp / CATALOG).write_text(json.dumps(catalog, ensure_ascii=False, separators=(",", ":")), encoding="utf-8")
        write_records(tmp / "documents.jsonl", docs)
        write_records(tmp / "chunks.jsonl", chunks)
        written = store.save(tmp)
        np.save(tmp / "sentences.npy", sentences, allow_pickle=False)
        return [*RECORD_FILES[1:], *written]

    write_folder(index_dir, manifest, fill)


def write_folder(index_dir: Path, manifest: dict, fill: Callable[[Path], list[str]],
                 carried: dict[str, dict] | None = None) -> None:
    """A new index folder beside ``index_dir``, swapped into place: ``fill`` writes the new files (returns their
    names), and each of ``carried`` (``{name: its recorded size and checksum}``) is hard-linked from the current
    folder and keeps its recorded checksum: an update does not copy or hash again what it did not change."""

    def cannot_write(exc: BaseException) -> HeraldError:
        first_line = str(exc).splitlines()[0][:160] if str(exc) else ""
        why = (exc.strerror if isinstance(exc, OSError) else None) or first_line or type(exc).__name__
        return IndexWriteError(index_dir, why)

    carried = carried or {}
    try:
        index_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = _fresh_dir(index_dir.parent, f".{index_dir.name}.tmp-")
    except OSError as exc:
        raise cannot_write(exc) from exc
    try:
        for name in carried:
            _link(index_dir / name, tmp / name)
        written = fill(tmp)
        # A checksum of every file, so a flipped bit is "damaged, rebuild", not confident nonsense.
        manifest = {**manifest, "files": {**carried, **{name: file_digest(tmp / name) for name in written}}}
        # The manifest goes last: a folder without one is never mistaken for an index.
        # Compact: json writes that in C; indented it falls back to Python, slower by a few times on a large index.
        (tmp / MANIFEST).write_text(json.dumps(manifest, ensure_ascii=False, separators=(",", ":")), encoding="utf-8")
        for name in (MANIFEST, *written):
            with open(tmp / name, "rb") as raw:
                os.fsync(raw.fileno())
        _swap_into_place(tmp, index_dir)
    except (OSError, RuntimeError) as exc:  # disk full, permissions, a concurrent build; faiss raises RuntimeError
        raise cannot_write(exc) from exc
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _link(src: Path, dst: Path) -> None:
    """``dst`` as a second name of ``src`` (files are never changed in place, so sharing is safe); a copy
    where the file system has no hard links."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _fresh_dir(parent: Path, prefix: str) -> Path:
    """A new, uniquely named folder. Unlike tempfile.mkdtemp (mode 0700) it gets the umask's usual
    mode, so the index stays readable by, say, a bot running as another user."""
    while True:
        path = parent / f"{prefix}{os.getpid()}-{uuid.uuid4().hex[:12]}"
        try:
            path.mkdir()
            return path
        except FileExistsError:  # pragma: no cover - 48 random bits
            continue


def _swap_into_place(tmp: Path, index_dir: Path) -> None:
    """Replace ``index_dir`` with ``tmp``: two renames with a journal, so the next build puts the old
    index back if we die between them."""
    if index_dir.exists():
        old = index_dir.parent / f".{index_dir.name}.old-{time.time_ns()}-{os.getpid()}"
        journal = _journal(index_dir)
        journal.write_text(old.name, encoding="utf-8")
        os.replace(index_dir, old)
        os.replace(tmp, index_dir)
        journal.unlink(missing_ok=True)
        if not _discard(old):
            log.warning("could not remove the previous index at %s; the next build will try again", old)
    else:
        os.replace(tmp, index_dir)
