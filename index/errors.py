"""Typed errors carrying data: the library says *what* failed, the application says it to people.

Each error's ``str()`` is a plain technical line for logs; the words a user reads (what to type, which
setting to change) are written by ``bot.messages`` from the fields here, so the library never names a
command-line flag or an environment variable.
"""

from __future__ import annotations

from pathlib import Path


class HeraldError(Exception):
    """An expected failure the application turns into one polite line (never a traceback)."""


class CorpusError(HeraldError):
    """The corpus cannot be read or holds nothing to index.

    ``problem``: ``missing``, ``not_folder``, ``unreadable``, ``empty`` (no usable article) or
    ``no_sentences`` (articles, but no text to index).
    """

    def __init__(self, problem: str, path: Path | str, detail: str = "") -> None:
        self.problem, self.path, self.detail = problem, Path(path), detail
        super().__init__(f"corpus {problem}: {path}" + (f" ({detail})" if detail else ""))


class IndexMissingError(HeraldError):
    """No index has been built at ``path`` yet."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        super().__init__(f"no index at {path}")


class IndexPathError(HeraldError):
    """``path`` cannot hold an index: ``problem`` is ``not_folder`` or ``foreign`` (it holds other files,
    ``found`` lists them), so a build refuses to replace it."""

    def __init__(self, problem: str, path: Path | str, found: list[str] | None = None) -> None:
        self.problem, self.path, self.found = problem, Path(path), list(found or [])
        super().__init__(f"index path {path}: {problem}" + (f" (holds {self.found[0]!r})" if self.found else ""))


class IndexCorruptError(HeraldError):
    """An index file is missing, unreadable or inconsistent; a rebuild fixes it."""

    def __init__(self, path: Path | str, detail: str = "") -> None:
        self.path, self.detail = Path(path), detail
        super().__init__(f"index at {path} is damaged" + (f": {detail}" if detail else ""))


class IndexMismatchError(HeraldError):
    """The index was made with another ``what`` (``format``, ``model``, ``dim`` or ``weights``: the same
    model name with other weights): ``found`` vs ``expected``."""

    def __init__(self, what: str, found: object, expected: object) -> None:
        self.what, self.found, self.expected = what, found, expected
        super().__init__(f"index {what} is {found!r}, expected {expected!r}")


class BuildBusyError(HeraldError):
    """Another process is building the index at ``path`` right now."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        super().__init__(f"another build of {path} is running")


class IndexWriteError(HeraldError):
    """The new index could not be written at ``path`` (``reason``: the OS's words); the old one is intact."""

    def __init__(self, path: Path | str, reason: str) -> None:
        self.path, self.reason = Path(path), reason
        super().__init__(f"cannot write the index at {path}: {reason}")


class ModelLoadError(HeraldError):
    """A model (``role``: ``embedder`` or ``reranker``) named ``name`` could not be loaded.

    ``requirement``: the pip requirement that provides it (an optional extra), when installing is the fix.
    """

    def __init__(self, role: str, name: str, detail: str = "", folder: str | None = None,
                 requirement: str = "") -> None:
        self.role, self.name, self.detail, self.folder, self.requirement = role, name, detail, folder, requirement
        super().__init__(f"cannot load {role} model {name!r}" + (f" from {folder}" if folder else "")
                         + (f": {detail}" if detail else ""))


class QuestionError(HeraldError):
    """The question cannot be asked as given: ``problem`` is ``empty``, ``not_text`` (bytes that are not
    UTF-8) or ``too_long`` (``length`` > ``limit``)."""

    def __init__(self, problem: str, length: int = 0, limit: int = 0) -> None:
        self.problem, self.length, self.limit = problem, length, limit
        super().__init__(f"question {problem}" + (f" ({length} > {limit} characters)" if problem == "too_long" else ""))


class QuestionSetError(HeraldError):
    """A question-set file is unreadable (``line`` 0), empty, or has a malformed ``line``."""

    def __init__(self, path: Path | str, problem: str, line: int = 0, detail: str = "") -> None:
        self.path, self.problem, self.line, self.detail = Path(path), problem, line, detail
        where = f"{path}:{line}" if line else str(path)
        super().__init__(f"question set {where}: {problem}" + (f" ({detail})" if detail else ""))


class UnknownBackendError(HeraldError):
    """A setting names a ``seam`` backend that is not registered (``known`` lists those that are)."""

    def __init__(self, seam: str, name: str, known: list[str]) -> None:
        self.seam, self.name, self.known = seam, name, known
        super().__init__(f"no {seam} named {name!r} (known: {', '.join(known) or 'none'})")


def describe(exc: BaseException, limit: int = 200) -> str:
    """``Type: first line of the message``, short enough for a one-line error (the message may be empty)."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:limit].rstrip('.')}" if lines else type(exc).__name__


class CollectionError(HeraldError):
    """A collection cannot be used: ``problem`` is ``bad_name`` (names are 1-64 of a-z, 0-9, ``-``, ``_``,
    starting with a letter or digit) or ``unknown`` (no such collection)."""

    def __init__(self, problem: str, name: str) -> None:
        self.problem, self.name = problem, name
        super().__init__(f"collection {name!r}: {problem}")


class DatabaseError(HeraldError):
    """The index's database cannot be used: ``problem`` is ``unreachable`` (no connection), ``driver_missing``
    (the optional PostgreSQL packages are not installed), ``no_vector`` (the pgvector extension is
    missing), ``schema_newer`` (migrated by newer code) or ``changed`` (a record the question was reading was removed
    by another process meanwhile: asking again answers from the new state); ``where`` is the database URL without its
    password."""

    def __init__(self, problem: str, where: str = "", detail: str = "") -> None:
        self.problem, self.where, self.detail = problem, where, detail
        super().__init__(f"database {problem}" + (f" at {where}" if where else "") + (f": {detail}" if detail else ""))
