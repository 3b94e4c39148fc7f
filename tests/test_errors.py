"""The one-line description of a third-party exception used in load errors."""

from index.errors import describe


def test_describe_takes_the_first_line_without_its_full_stop():
    assert describe(OSError("no such model.\nTraceback detail")) == "OSError: no such model"


def test_describe_copes_with_an_empty_message():
    assert describe(RuntimeError()) == "RuntimeError"


def test_describe_shortens_long_messages():
    assert describe(ValueError("x" * 500), limit=10) == "ValueError: " + "x" * 10
