"""Import rules for bot/, read with ``ast`` (nothing is imported, so a broken module still gets checked).

Why: the asking cog once imported its helpers from the client module, which loads the cogs: an
import cycle. Shared helpers live in the leaf ``bot.discord_bot.util``; cogs reach ``HeraldBot``
(``bot.discord_bot.client``) only under ``if TYPE_CHECKING:``.
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


def modules_under(folder: Path) -> dict[str, Path]:
    """Every module of a package folder of the repository, by dotted name."""
    return {module_name(p): p for p in sorted(folder.rglob("*.py"))}


MODULES = modules_under(BOT_DIR)


def is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def runtime_imports(source: str, module: str, is_package: bool = False, modules: dict[str, Path] | None = None,
                    package_too: bool = True) -> set[str]:
    """Absolute names imported when the code runs (top level or in functions), skipping ``if TYPE_CHECKING:``.

    ``from pkg import sub`` counts as importing ``pkg.sub`` when that is one of ``modules`` (default: bot/'s),
    and ``pkg`` too unless ``package_too`` is False (then only when a name imported is not a module).
    """
    modules = MODULES if modules is None else modules
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
            subs = {f"{base}.{a.name}" for a in node.names} & modules.keys()
            found.update(subs)
            if package_too or not subs or len(subs) < len(node.names):
                found.add(base)
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
        "from bot.discord_bot.client import polite\n"
        "if TYPE_CHECKING:\n    from bot.discord_bot.client import HeraldBot\n"
    )
    assert "bot.discord_bot.client" in runtime_imports(old_asking, "bot.discord_bot.cogs.asking")
    only_typing = "import typing\nif typing.TYPE_CHECKING:\n    from bot.discord_bot.client import HeraldBot\n"
    assert "bot.discord_bot.client" not in runtime_imports(only_typing, "bot.discord_bot.cogs.asking")
    in_function = "def f():\n    from .. import client\n"
    assert "bot.discord_bot.client" in runtime_imports(in_function, "bot.discord_bot.cogs.asking")
    assert "bot.discord_bot.client" in runtime_imports("from ..client import reply_to\n",
                                                       "bot.discord_bot.cogs.asking")


# ------------------------------------------------------------------------------------------ rules


def test_discord_util_is_a_leaf():
    assert within_bot(imports_of("bot.discord_bot.util")) <= {"bot.format", "bot.messages"}
    assert within_bot(imports_of("bot.messages")) == set()


@pytest.mark.parametrize("cog", sorted(n for n in MODULES if n.startswith("bot.discord_bot.cogs.")))
def test_cogs_never_import_the_app_at_runtime(cog):
    assert not {"bot.discord_bot.client", "bot.discord_bot.launcher"} & imports_of(cog)


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
    tree = ast.parse(MODULES["bot.discord_bot.client"].read_text(encoding="utf-8"))
    extensions = next(
        ast.literal_eval(node.value) for node in ast.walk(tree)
        if isinstance(node, ast.AnnAssign | ast.Assign) and node.value is not None
        and any(isinstance(t, ast.Name) and t.id == "initial_extensions"
                for t in (node.targets if isinstance(node, ast.Assign) else [node.target])))
    assert set(extensions) == {n for n in MODULES if n.startswith("bot.discord_bot.cogs.")}
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


# ------------------------------------------------------------------------- the library's layers

# index/ from the bottom up; a module may import its own layer or a lower one, never a higher one.
# Within a layer, the cycle check below keeps imports one-way.
INDEX_LAYERS = [
    ("index.types", "index.errors", "index.registry", "index.text", "index.threads"),
    ("index.ingest", "index.embed"),
    ("index.store",),
    ("index.search",),
    ("index.answer",),
    ("index.engine", "index.build", "index.evaluate"),
    ("index",),
]


INDEX_MODULES = modules_under(INDEX_DIR)


def layer_of(module: str) -> int:
    """The layer of a module of index/: its own entry, else its package's (index.store.disk: index.store)."""
    best = max((prefix for layer in INDEX_LAYERS for prefix in layer
                if module == prefix or module.startswith(prefix + ".")), key=len)
    return next(i for i, layer in enumerate(INDEX_LAYERS) if best in layer)


def index_imports(source: str, module: str, is_package: bool = False) -> set[str]:
    """Modules of index/ imported when ``source`` runs (top level or in functions, not under TYPE_CHECKING);
    ``from index import threads`` counts as ``index.threads``, ``from index.store import X`` as ``index.store``."""
    found = runtime_imports(source, module, is_package, INDEX_MODULES, package_too=False)
    return {n for n in found if n in INDEX_MODULES}


def index_graph() -> dict[str, set[str]]:
    return {name: index_imports(path.read_text(encoding="utf-8"), name, path.name == "__init__.py") - {name}
            for name, path in INDEX_MODULES.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def walk(name: str, path: list[str]) -> list[str] | None:
        state[name] = 1
        for dep in sorted(graph.get(name, ())):
            if state.get(dep) == 1:
                return path[path.index(dep):] + [dep]
            if dep not in state:
                found = walk(dep, path + [dep])
                if found:
                    return found
        state[name] = 2
        return None

    for name in sorted(graph):
        if name not in state:
            found = walk(name, [name])
            if found:
                return found
    return None


def test_every_module_of_the_library_has_a_layer():
    assert all(0 <= layer_of(name) < len(INDEX_LAYERS) for name in INDEX_MODULES)


def test_no_import_cycles_within_the_library():
    cycle = find_cycle(index_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_library_never_imports_upward():
    upward = sorted(f"{name} imports {dep}" for name, deps in index_graph().items() for dep in deps
                    if layer_of(dep) > layer_of(name))
    assert upward == []


def test_the_layer_checks_can_fail():
    source = ("from typing import TYPE_CHECKING\nfrom index import threads\nfrom index.store import load_index\n"
              "def f():\n    from index.answer.answerers import ANSWERERS\n"
              "if TYPE_CHECKING:\n    from index.engine import Engine\n")
    found = index_imports(source, "index.search.retrieval")
    assert found == {"index.threads", "index.store", "index.answer.answerers"}
    assert [d for d in found if layer_of(d) > layer_of("index.search.retrieval")] == ["index.answer.answerers"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


# ------------------------------------------------------------------------------ function length

MAX_FUNCTION_LINES = 50
# bot/ functions still over the limit (the bot's reshaping brings them under it): this list may only shrink.
BOT_LONG_FUNCTIONS: set[str] = set()


def long_functions(folder: Path) -> set[str]:
    """``path:function`` for every function (methods and nested ones included) over MAX_FUNCTION_LINES."""
    out = set()
    for path in sorted(folder.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) or node.end_lineno is None:
                continue
            if node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES:
                out.add(f"{path.relative_to(folder.parent)}:{node.name}")
    return out


def test_no_function_in_the_library_is_over_50_lines():
    assert long_functions(INDEX_DIR) == set()


def test_no_new_long_function_in_the_bot():
    assert long_functions(BOT_DIR) <= BOT_LONG_FUNCTIONS


def test_the_length_check_can_fail(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "m.py").write_text("def long():\n" + "    x = 1\n" * 50 + "\n\ndef short():\n    return 1\n")
    assert long_functions(pkg) == {"pkg/m.py:long"}
