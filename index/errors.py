"""One exception family, so the CLI and the bot can turn any expected failure into one polite line."""


class HeraldError(Exception):
    """An expected failure whose message is fit to show a user (what is wrong, what to do)."""


class CorpusError(HeraldError):
    """The corpus folder is missing, unreadable or holds no usable article."""


class IndexMissingError(HeraldError):
    """No index has been built at the given folder yet."""


class IndexCorruptError(HeraldError):
    """An index file is missing or unreadable; a rebuild fixes it."""


class IndexMismatchError(HeraldError):
    """The index was built with another model, dimension or format version."""


class QuestionError(HeraldError):
    """The question cannot be asked as given (empty, too long, ...)."""


def describe(exc: BaseException, limit: int = 200) -> str:
    """``Type: first line of the message``, short enough for a one-line error (the message may be empty)."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:limit].rstrip('.')}" if lines else type(exc).__name__
