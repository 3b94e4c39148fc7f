"""Import rules for bot/, read with ``ast`` (nothing is imported, so a broken module still gets checked).

Why: the asking cog once imported its helpers from ``bot.discord_app``, which loads the cogs: an
import cycle. Shared helpers live in the leaf ``bot.discord_util``; cogs reach ``HeraldBot`` only
under ``if TYPE_CHECKING:``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

BOT_DIR = Path(__file__).resolve().parent.parent / "bot"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(BOT_DIR.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def bot_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(BOT_DIR.rglob("*.py"))}


MODULES = bot_modules()


def is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def runtime_imports(source: str, module: str, is_package: bool = False) -> set[str]:
    """Absolute names imported when the code runs (top level or in functions), skipping ``if TYPE_CHECKING:``.

    ``from pkg import sub`` counts as importing ``pkg.sub`` when that is a module under bot/.
    """
    package = module if is_package else module.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            found.add(base)
            for alias in node.names:
                if f"{base}.{alias.name}" in MODULES:
                    found.add(f"{base}.{alias.name}")
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(source))
    return found


def imports_of(name: str) -> set[str]:
    path = MODULES[name]
    return runtime_imports(path.read_text(encoding="utf-8"), name, path.name == "__init__.py")


def within_bot(names: set[str]) -> set[str]:
    return {n for n in names if n == "bot" or n.startswith("bot.")}


# ------------------------------------------------------------------------------- the checker itself


def test_checker_sees_runtime_imports_and_skips_type_checking_ones():
    old_asking = (
        "from typing import TYPE_CHECKING\n"
        "from bot.discord_app import polite\n"
        "if TYPE_CHECKING:\n    from bot.discord_app import HeraldBot\n"
    )
    assert "bot.discord_app" in runtime_imports(old_asking, "bot.cogs.asking")
    only_typing = "import typing\nif typing.TYPE_CHECKING:\n    from bot.discord_app import HeraldBot\n"
    assert "bot.discord_app" not in runtime_imports(only_typing, "bot.cogs.asking")
    in_function = "def f():\n    from .. import discord_app\n"
    assert "bot.discord_app" in runtime_imports(in_function, "bot.cogs.asking")
    assert "bot.discord_app" in runtime_imports("from ..discord_app import reply_to\n", "bot.cogs.asking")


# ------------------------------------------------------------------------------------------ rules


def test_discord_util_is_a_leaf():
    assert within_bot(imports_of("bot.discord_util")) <= {"bot.format", "bot.messages"}
    assert within_bot(imports_of("bot.messages")) == set()


@pytest.mark.parametrize("cog", sorted(n for n in MODULES if n.startswith("bot.cogs.")))
def test_cogs_never_import_the_app_at_runtime(cog):
    assert "bot.discord_app" not in imports_of(cog)


def test_no_import_cycles_within_bot():
    graph = {name: within_bot(imports_of(name)) & MODULES.keys() for name in MODULES}
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def walk(name: str, path: list[str]) -> None:
        state[name] = 1
        for dep in sorted(graph[name]):
            if state.get(dep) == 1:
                cycle = path[path.index(dep):] + [dep]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                walk(dep, path + [dep])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            walk(name, [name])


def test_every_initial_extension_has_an_async_setup():
    tree = ast.parse(MODULES["bot.discord_app"].read_text(encoding="utf-8"))
    extensions = next(
        ast.literal_eval(node.value) for node in ast.walk(tree)
        if isinstance(node, ast.AnnAssign | ast.Assign) and node.value is not None
        and any(isinstance(t, ast.Name) and t.id == "initial_extensions"
                for t in (node.targets if isinstance(node, ast.Assign) else [node.target])))
    assert set(extensions) == {n for n in MODULES if n.startswith("bot.cogs.")}
    for name in extensions:
        body = ast.parse(MODULES[name].read_text(encoding="utf-8")).body
        assert any(isinstance(f, ast.AsyncFunctionDef) and f.name == "setup" for f in body), name


# ------------------------------------------------------------------------- bot/ and the library


INDEX_DIR = BOT_DIR.parent / "index"


def all_imports(path: Path, module: str) -> set[str]:
    """Every module name imported anywhere in the file, TYPE_CHECKING blocks included (they name types
    the code relies on too), with ``from index import X`` counted as ``index``."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level:
            found.add(node.module or "")
    return found


def test_bot_uses_only_the_public_api_of_the_library():
    offenders = {name: sorted(n for n in all_imports(path, name) if n.startswith("index."))
                 for name, path in MODULES.items()}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_public_api_check_can_fail(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from index.store import load_index\nimport index.search\nfrom index import Engine\n")
    assert {n for n in all_imports(bad, "bad") if n.startswith("index.")} == {"index.store", "index.search"}


def test_public_api_names_exist():
    import index

    assert index.__all__ and all(hasattr(index, name) for name in index.__all__)


def test_library_never_imports_the_application_or_discord():
    for path in sorted(INDEX_DIR.rglob("*.py")):
        names = all_imports(path, path.stem)
        assert not {n for n in names if n.split(".")[0] in ("bot", "discord")}, path.name


@pytest.mark.parametrize("phrase", ["herald build", "HERALD_", "--index", "--model", "The articles don't say",
                                    "try asking in English"])
def test_library_holds_no_words_for_people(phrase):
    """CLI hints, setting names and user-facing sentences live in bot/ (bot/messages.py)."""
    hits = [p.name for p in sorted(INDEX_DIR.rglob("*.py")) if phrase in p.read_text(encoding="utf-8")]
    assert hits == []
