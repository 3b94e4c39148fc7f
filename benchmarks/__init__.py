"""Herald's benchmarks: scripts that measure, never pass/fail. Run each from the repository root as a module,

    .venv/bin/python -m benchmarks.quality --article --out /tmp/quality.md --plot /tmp/abstention.png

so that ``index``, ``bot`` and ``benchmarks`` import from the working tree with no ``sys.path`` edits.
What several scripts need (data sets, scoring, percentiles, Markdown tables) is in ``benchmarks/common.py``;
``bot_load`` imports the fake Discord as ``tests.fakes.discord`` (``tests/`` is a namespace package from
the repository root; inside ``tests/fakes`` every import is relative, so the tests' ``fakes.*`` works too).
Each script's docstring says what it measures and how it was run.
"""
