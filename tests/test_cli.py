"""The `herald` command line, in-process through CliRunner (fake embedder) and a few subprocess checks.

Every failure a user can cause must be one line on stderr ("Error: what is wrong; what to do"), a
non-zero exit and no traceback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from index.build import build_index
from index.ingest.chunking import chunk_document
from index.ingest.corpus import load_corpus
from index.store import MANIFEST, read_manifest

QUESTION = "Who vetoed the resolution?"
HERALD = Path(sys.executable).parent / "herald"


def opts(paths, model="test-hash"):
    return ["--corpus", str(paths.corpus), "--index", str(paths.index), "--model", model]


def stderr_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


def assert_one_line_error(result, *fragments: str, code: int = 1) -> str:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    lines = stderr_lines(result)
    assert len(lines) == 1, lines
    assert lines[0].startswith("Error: ")
    for fragment in fragments:
        assert fragment in lines[0]
    assert result.stdout == ""
    return lines[0]


def write_doc(path: Path, title: str, *paragraphs: str) -> None:
    path.write_text(title + "\n\n" + "\n\n".join(paragraphs) + "\n", encoding="utf-8")


# ------------------------------------------------------------------------------------------- build


def test_build_prints_what_changed(article_corpus, fake_embedder, invoke):
    r = invoke("build", *opts(article_corpus))
    assert r.exit_code == 0, r.output
    assert "1 document(s)" in r.stdout and "1 added, 0 changed, 0 removed, 0 unchanged" in r.stdout
    assert "  added: euronews-frosty-franco-russian-relations.txt" in r.stdout
    assert (article_corpus.index / MANIFEST).exists()

    r = invoke("build", *opts(article_corpus))
    assert r.exit_code == 0
    assert r.stdout.startswith("Nothing changed")
    assert "added:" not in r.stdout

    write_doc(article_corpus.corpus / "second.md", "Second", "A second article about the harvest in Normandy.")
    (article_corpus.corpus / "euronews-frosty-franco-russian-relations.txt").unlink()
    r = invoke("build", *opts(article_corpus))
    assert r.exit_code == 0
    assert "1 added, 0 changed, 1 removed, 0 unchanged" in r.stdout
    assert "  added: second.md" in r.stdout
    assert "  removed: euronews-frosty-franco-russian-relations.txt" in r.stdout


def test_build_full_re_embeds(built_index, fake_embedder, invoke):
    fake_embedder.seen.clear()
    r = invoke("build", *opts(built_index), "--full")
    assert r.exit_code == 0 and fake_embedder.seen
    assert "Nothing changed" not in r.stdout


def test_build_interrupted_keeps_the_old_index(built_index, make_embedder, invoke):
    manifest = (built_index.index / MANIFEST).read_bytes()
    write_doc(built_index.corpus / "new.txt", "New", "Something new to embed. " * 50)
    make_embedder("test-hash", fail_after=0, exc=KeyboardInterrupt)
    r = invoke("build", *opts(built_index))
    assert r.exit_code == 130
    assert "Interrupted; nothing was changed." in r.stderr and "Traceback" not in r.output
    assert (built_index.index / MANIFEST).read_bytes() == manifest


def test_build_failure_midway_is_one_line_and_keeps_the_old_index(built_index, make_embedder, invoke):
    """An unexpected library error is not hidden, but the index is untouched."""
    manifest = (built_index.index / MANIFEST).read_bytes()
    write_doc(built_index.corpus / "new.txt", "New", "Something new.")
    make_embedder("test-hash", fail_after=0, exc=RuntimeError)
    with pytest.raises(RuntimeError):
        invoke("build", *opts(built_index))
    assert (built_index.index / MANIFEST).read_bytes() == manifest


def test_build_missing_corpus(herald_paths, fake_embedder, invoke):
    herald_paths.corpus.rmdir()
    assert_one_line_error(invoke("build", *opts(herald_paths)), "does not exist")


def test_build_empty_corpus(herald_paths, fake_embedder, invoke):
    assert_one_line_error(invoke("build", *opts(herald_paths)), "no articles found")


# --------------------------------------------------------------------------------------------- ask


def test_ask_prints_answer_and_numbered_sources(built_index, fake_embedder, invoke):
    r = invoke("ask", *opts(built_index), QUESTION)
    assert r.exit_code == 0, r.output
    out = r.stdout
    assert "Sources:" in out
    assert "[1] Frosty Franco-Russian relations" in out and "[2] " in out and "[3] " in out
    assert "veto" in out.split("Sources:")[0].lower()
    assert r.stderr == ""  # the index was up to date: nothing to say


@pytest.mark.parametrize("below,shown", [("1.0", True), ("0", False)])
def test_ask_says_when_an_answer_is_tentative(built_index, fake_embedder, invoke, below, shown):
    from bot.messages import TENTATIVE_MESSAGE

    env = {"HERALD_TENTATIVE_BELOW": below, "HERALD_ABSTAIN_THRESHOLD": "0"}
    text = invoke("ask", *opts(built_index), QUESTION, env=env)
    obj = json.loads(invoke("ask", "--json", *opts(built_index), QUESTION, env=env).stdout)
    assert text.exit_code == 0 and not obj["abstained"]
    assert text.stdout.startswith(TENTATIVE_MESSAGE) is shown and obj["tentative"] is shown


def test_ask_builds_a_missing_index_first_and_says_so(article_corpus, fake_embedder, invoke):
    r = invoke("ask", *opts(article_corpus), QUESTION)
    assert r.exit_code == 0, r.output
    assert f"No index at {article_corpus.index} yet; building it" in r.stderr
    assert "No index" not in r.stdout and "Sources:" in r.stdout
    assert (article_corpus.index / MANIFEST).exists()


def test_ask_updates_a_stale_index_first_and_says_so(built_index, fake_embedder, invoke):
    write_doc(built_index.corpus / "zebra.txt", "Zebras", "Zebras graze on the savannah near Nairobi every dry season.")
    r = invoke("ask", *opts(built_index), "Where do zebras graze?")
    assert r.exit_code == 0, r.output
    assert "The corpus changed since the index was built (1 new); updating the index." in r.stderr
    assert "savannah" in r.stdout
    manifest = read_manifest(built_index.index)
    assert "zebra.txt" in manifest["documents"]


def test_ask_json_stale_index_still_says_so_on_stderr(built_index, fake_embedder, invoke):
    write_doc(built_index.corpus / "zebra.txt", "Zebras", "Zebras graze on the savannah near Nairobi.")
    r = invoke("ask", "--json", *opts(built_index), "Where do zebras graze?")
    assert r.exit_code == 0
    assert "updating the index" in r.stderr
    json.loads(r.stdout)  # stdout is still exactly one JSON object


def check_answer_object(obj: dict, question: str) -> None:
    assert obj["question"] == question
    assert isinstance(obj["answer"], str) and isinstance(obj["abstained"], bool)
    assert (obj["answer"] == "") == obj["abstained"]
    assert isinstance(obj["tentative"], bool) and not (obj["tentative"] and obj["abstained"])
    assert isinstance(obj["latency_ms"], (int, float)) and obj["latency_ms"] >= 0
    assert isinstance(obj["sources"], list)
    for src in obj["sources"]:
        assert isinstance(src["text"], str) and src["text"]
        assert isinstance(src["title"], str) and src["title"]
        assert isinstance(src["score"], (int, float))


def test_ask_json(built_index, fake_embedder, invoke):
    r = invoke("ask", "--json", *opts(built_index), QUESTION)
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert len(lines) == 1
    obj = json.loads(lines[0])
    check_answer_object(obj, QUESTION)
    assert len(obj["sources"]) == 3
    assert obj["sources"][0]["title"] == "Frosty Franco-Russian relations"


def test_ask_json_stdin_one_object_per_line_in_order_model_loaded_once(built_index, fake_embedder, invoke):
    questions = [QUESTION, "Where did Ayrault meet John Kerry?", "What is the capital of Australia?",
                 "How many Security Council members supported the resolution?"]
    stdin = "\n".join([questions[0], "", questions[1], "   ", *questions[2:]]) + "\n"
    calls = fake_embedder.calls
    r = invoke("ask", "--json", *opts(built_index), "-", input=stdin)
    assert r.exit_code == 0, r.output
    objs = [json.loads(line) for line in r.stdout.splitlines()]
    assert [o["question"] for o in objs] == questions  # blank lines skipped, order kept
    for obj, q in zip(objs, questions):
        check_answer_object(obj, q)
    assert fake_embedder.loads == 1
    assert fake_embedder.calls - calls == len(questions)  # one query embedding per question, no rebuild


def test_ask_json_stdin_bad_line_is_reported_in_place(built_index, fake_embedder, invoke):
    stdin = f"{QUESTION}\n{'x' * 10_000}\n\x00\x01\x02\nWhat did Russia veto?\n"
    r = invoke("ask", "--json", *opts(built_index), "-", input=stdin)
    objs = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(objs) == 4
    assert "error" not in objs[0] and "error" not in objs[3]
    assert "10,000 characters" in objs[1]["error"] and objs[1]["abstained"] and objs[1]["sources"] == []
    assert "empty" in objs[2]["error"]
    assert len(objs[1]["question"]) <= 200
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert stderr_lines(r) == ['Error: 2 question(s) could not be asked; see their "error" fields']


@pytest.mark.parametrize("question, fragment", [
    ("", "the question is empty"),
    ("   \t  ", "the question is empty"),
    ("\x00\x07\x1b", "the question is empty"),
    ("?!", "the question is empty"),
    ("x" * 10_000, "10,000 characters long; keep it under 500"),
])
@pytest.mark.parametrize("as_json", [False, True])
def test_ask_bad_question_fails_fast(built_index, fake_embedder, invoke, question, fragment, as_json):
    args = ["ask", *(["--json"] if as_json else []), *opts(built_index), question]
    if as_json:  # a JSON error object on stdout (issue 10: it was plain text), and a non-zero exit
        r = invoke(*args)
        assert r.exit_code == 1 and fragment in json.loads(r.stdout)["error"]
    else:
        assert_one_line_error(invoke(*args), fragment)
    assert fake_embedder.loads == 0  # refused before loading the model


def test_ask_long_question_limit_is_a_setting(built_index, fake_embedder, invoke):
    r = invoke("ask", *opts(built_index), "Who vetoed " + "the " * 200 + "resolution?",
               env={"HERALD_MAX_QUESTION_CHARS": "2000"})
    assert r.exit_code == 0, r.output


def test_ask_control_characters_are_stripped_and_answered(built_index, fake_embedder, invoke):
    clean = json.loads(invoke("ask", "--json", *opts(built_index), QUESTION).stdout)
    r = invoke("ask", "--json", *opts(built_index), "\x00Who\x07 vetoed\u200b the\tresolution?\x1b\x7f")
    assert r.exit_code == 0, r.output
    dirty = json.loads(r.stdout)
    assert dirty["question"] == QUESTION
    assert dirty["answer"] == clean["answer"] and not dirty["abstained"]
    assert [s["text"] for s in dirty["sources"]] == [s["text"] for s in clean["sources"]]


@pytest.mark.parametrize("question", ["Qui a opposé son veto à la résolution ?", "¿Quién vetó la resolución?",
                                      "Кто наложил вето на резолюцию?"])
def test_ask_other_language_gets_the_note(built_index, fake_embedder, invoke, question):
    r = invoke("ask", "--json", *opts(built_index), question)
    assert r.exit_code == 0, r.output
    obj = json.loads(r.stdout)
    assert "English" in obj["note"]
    r = invoke("ask", *opts(built_index), question)
    assert r.exit_code == 0 and "Note: Herald reads questions in English best" in r.stdout


def test_english_question_has_no_note(built_index, fake_embedder, invoke):
    assert json.loads(invoke("ask", "--json", *opts(built_index), QUESTION).stdout)["note"] == ""


@pytest.mark.parametrize("name, damage", [
    ("index.faiss", "delete"), ("index.faiss", "truncate"), ("chunks.jsonl", "truncate"),
    ("sentences.npy", "delete"), ("documents.jsonl", "delete"), ("manifest.json", "garbage"),
    ("catalog.json", "garbage"),
])
@pytest.mark.parametrize("command", ["ask", "ask --json"])
def test_ask_damaged_index(built_index, fake_embedder, invoke, name, damage, command):
    path = built_index.index / name
    if damage == "delete":
        path.unlink()
    elif damage == "truncate":
        path.write_bytes(path.read_bytes()[:40])
    else:
        path.write_text("{this is not json", encoding="utf-8")
    line = assert_one_line_error(invoke(*command.split(), *opts(built_index), QUESTION), "herald build")
    assert str(built_index.index) in line


def test_ask_index_from_another_model(built_index, fake_embedder, invoke):
    path = built_index.index / MANIFEST
    manifest = json.loads(path.read_text(encoding="utf-8"))
    manifest["model"] = "some-other-model"
    path.write_text(json.dumps(manifest), encoding="utf-8")
    assert_one_line_error(invoke("ask", *opts(built_index), QUESTION),
                          "built with model 'some-other-model', not 'test-hash'",
                          "herald build --model test-hash")


def test_ask_index_of_another_dimension(article_corpus, fake_embedder, make_embedder, invoke):
    from conftest import HashEmbedder

    build_index(article_corpus.corpus, article_corpus.index, HashEmbedder("test-hash", dim=32))
    assert_one_line_error(invoke("ask", *opts(article_corpus), QUESTION), "32-dimensional", "gives 64",
                          "herald build")


def test_ask_missing_corpus_and_index(herald_paths, fake_embedder, invoke):
    herald_paths.corpus.rmdir()
    assert_one_line_error(invoke("ask", *opts(herald_paths), QUESTION), "does not exist")


def test_ask_empty_corpus_and_no_index(herald_paths, fake_embedder, invoke):
    assert_one_line_error(invoke("ask", *opts(herald_paths), QUESTION), "no articles found")


def test_ask_missing_corpus_with_an_index(built_index, fake_embedder, invoke, tmp_path):
    """The index still answers (issue 10), and says why it could not be brought up to date."""
    args = ["ask", "--corpus", str(tmp_path / "gone"), "--index", str(built_index.index), "--model", "test-hash"]
    r = invoke(*args, QUESTION)
    assert r.exit_code == 0 and "Russia" in r.stdout
    assert "Answering from the index as it was" in r.stderr and "does not exist" in r.stderr


@pytest.mark.parametrize("has_index", [False, True])
def test_ask_corpus_path_is_a_file(built_index, fake_embedder, invoke, real_article, has_index, tmp_path):
    index = built_index.index if has_index else tmp_path / "fresh-index"
    args = ["ask", "--corpus", str(real_article), "--index", str(index), "--model", "test-hash", QUESTION]
    if has_index:  # answered from the index it has, saying why it could not be checked
        r = invoke(*args)
        assert r.exit_code == 0 and "not a folder" in r.stderr
    else:
        assert_one_line_error(invoke(*args), "not a folder")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads folders whatever their mode")
def test_ask_unreadable_corpus(article_corpus, fake_embedder, invoke):
    article_corpus.corpus.chmod(0)
    try:
        assert_one_line_error(invoke("ask", *opts(article_corpus), QUESTION), "cannot read")
    finally:
        article_corpus.corpus.chmod(0o755)


@pytest.mark.parametrize("command", ["info", "build", "ask"])
def test_index_path_is_a_file(article_corpus, fake_embedder, invoke, tmp_path, command):
    f = tmp_path / "a-file"
    f.write_text("x", encoding="utf-8")
    args = [command, "--corpus", str(article_corpus.corpus), "--index", str(f), "--model", "test-hash"]
    assert_one_line_error(invoke(*args, *([QUESTION] if command == "ask" else [])), "is not a folder")
    assert f.read_text(encoding="utf-8") == "x"


@pytest.mark.parametrize("command", ["build", "ask"])
def test_index_path_is_someone_elses_folder(article_corpus, fake_embedder, invoke, tmp_path, command):
    folder = tmp_path / "Documents"
    folder.mkdir()
    (folder / "thesis.txt").write_text("precious", encoding="utf-8")
    args = [command, "--corpus", str(article_corpus.corpus), "--index", str(folder), "--model", "test-hash"]
    assert_one_line_error(invoke(*args, *([QUESTION] if command == "ask" else [])),
                          "is not a Herald index", "refusing to replace it")
    assert (folder / "thesis.txt").read_text(encoding="utf-8") == "precious"


# -------------------------------------------------------------------------------------------- info


def test_info(built_index, fake_embedder, invoke):
    n_chunks = len(chunk_document(load_corpus(built_index.corpus)[0]))
    r = invoke("info", *opts(built_index))
    assert r.exit_code == 0, r.output
    out = r.stdout
    assert "Model:     test-hash (64 dimensions)" in out
    assert f"Documents: 1   Chunks: {n_chunks}" in out
    assert "Updated:   20" in out
    assert "(up to date)" in out
    assert f"Frosty Franco-Russian relations [euronews-frosty-franco-russian-relations.txt, {n_chunks} chunks]" in out
    assert fake_embedder.loads == 0  # info never loads the model

    (built_index.corpus / "euronews-frosty-franco-russian-relations.txt").write_text("Changed\n\nText.\n")
    r = invoke("info", *opts(built_index))
    assert "stale: 1 changed (run `herald build`)" in r.stdout

    r = invoke("info", "--json", *opts(built_index))
    info = json.loads(r.stdout)
    assert info["documents"] == 1 and info["chunks"] == n_chunks and info["model"] == "test-hash"
    assert info["built_at"] and info["state"].startswith("stale")


def test_info_missing_index(herald_paths, invoke):
    assert_one_line_error(invoke("info", *opts(herald_paths)), "no index at", "herald build")


def test_info_missing_corpus_still_describes_the_index(built_index, invoke, tmp_path):
    r = invoke("info", "--index", str(built_index.index), "--corpus", str(tmp_path / "gone"))
    assert r.exit_code == 0 and "unknown (corpus folder" in r.stdout


# -------------------------------------------------------------------------------------------- eval


@pytest.fixture
def small_qa(tmp_path) -> Path:
    path = tmp_path / "qa.jsonl"
    rows = [
        {"question": "Who vetoed the resolution?", "answers": ["Russia vetoed it"]},
        {"question": "How many Security Council members supported the resolution?", "answers": ["Eleven"]},
        {"question": "Where did the airstrikes fall?", "answers": ["rebel-held districts"]},
        {"question": "What is the recipe for banana bread?", "answers": []},
        {"question": "Who won the football world cup in 1998?", "answers": []},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n", encoding="utf-8")
    return path


def test_eval_prints_the_figures(built_index, fake_embedder, invoke, small_qa):
    r = invoke("eval", *opts(built_index), str(small_qa))
    assert r.exit_code == 0, r.output
    out = r.stdout
    assert "Questions: 5 (3 answerable, 2 should abstain)" in out
    for key in ("answer_hit", "recall@1", "recall@3", "recall@5", "abstention_accuracy"):
        line = next(ln for ln in out.splitlines() if ln.strip().startswith(key + " "))
        assert 0.0 <= float(line.split()[-1]) <= 1.0
    assert "latency p50/p95" in out and out.rstrip().endswith("ms")


def test_eval_json(built_index, fake_embedder, invoke, small_qa):
    r = invoke("eval", "--json", *opts(built_index), str(small_qa))
    s = json.loads(r.stdout)
    assert s["questions"] == 5 and s["answerable"] == 3 and s["off_topic"] == 2
    assert s["recall@1"] <= s["recall@3"] <= s["recall@5"]
    assert s["latency_p50_ms"] <= s["latency_p95_ms"]


@pytest.mark.parametrize("content, fragment", [
    ('{"question": "ok", "answers": []}\nnot json at all\n', "qa.jsonl:2: expected"),
    ('{"answers": ["x"]}\n', "qa.jsonl:1: expected"),
    ('{"question": "q", "answers": "Russia"}\n', "qa.jsonl:1: expected"),
    ('["question", "answers"]\n', "qa.jsonl:1: expected"),
    ("\n\n", "holds no questions"),
])
def test_eval_malformed_qa_file(built_index, fake_embedder, invoke, tmp_path, content, fragment):
    path = tmp_path / "qa.jsonl"
    path.write_text(content, encoding="utf-8")
    assert_one_line_error(invoke("eval", *opts(built_index), str(path)), fragment)
    assert fake_embedder.loads == 0  # the file is checked before the model loads


def test_eval_missing_or_binary_qa_file(built_index, fake_embedder, invoke, tmp_path):
    assert_one_line_error(invoke("eval", *opts(built_index), str(tmp_path / "none.jsonl")), "cannot read")
    (tmp_path / "bin.jsonl").write_bytes(b"\xff\xfe\x00\x01")
    assert_one_line_error(invoke("eval", *opts(built_index), str(tmp_path / "bin.jsonl")), "cannot read")


# ---------------------------------------------------------------------------------- subprocesses

HEAVY = ("torch", "faiss", "sentence_transformers", "transformers", "discord")
PROBE = (
    "import sys\n"
    "from click.testing import CliRunner\n"
    "from bot.cli import cli\n"
    "r = CliRunner().invoke(cli, sys.argv[1:], obj={})\n"
    "assert r.exit_code == 0, r.output\n"
    f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
)


@pytest.mark.parametrize("args", [["--help"], ["ask", "--help"], ["build", "--help"], ["bot", "--help"],
                                  ["--version"]])
def test_help_imports_nothing_heavy(args, isolated_settings):
    out = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=60,
                         cwd=isolated_settings)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"`herald {' '.join(args)}` imported {out.stdout.strip()}"


@pytest.mark.skipif(not HERALD.exists(), reason="the herald script is not installed next to this Python")
def test_installed_script_help_importtime(isolated_settings):
    out = subprocess.run([sys.executable, "-X", "importtime", str(HERALD), "--help"], capture_output=True,
                         text=True, timeout=60, cwd=isolated_settings)
    assert out.returncode == 0 and "Usage: herald" in out.stdout
    imported = {line.split("|")[-1].strip().split(".")[0] for line in out.stderr.splitlines() if "|" in line}
    assert not imported & set(HEAVY)


@pytest.mark.skipif(not HERALD.exists(), reason="the herald script is not installed next to this Python")
@pytest.mark.parametrize("args, fragment", [
    (["ask", "   "], "the question is empty"),
    (["info", "--index", "no-such-index"], "no index at no-such-index"),
    (["eval", "no-such-qa.jsonl"], "cannot read question set"),
])
def test_installed_script_errors_are_one_line(isolated_settings, args, fragment):
    out = subprocess.run([str(HERALD), *args], capture_output=True, text=True, timeout=60, cwd=isolated_settings)
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and fragment in lines[0], out.stderr
    assert out.stdout == ""


# ------------------------------------------------------------------------------------- real model


@pytest.mark.model
def test_real_model_ask_end_to_end(article_corpus, invoke):
    r = invoke("ask", "--corpus", str(article_corpus.corpus), "--index", str(article_corpus.index), QUESTION)
    assert r.exit_code == 0, r.output
    answer = " ".join(r.stdout.split("Sources:")[0].split())  # the CLI wraps long lines
    assert "Russia vetoed it" in answer
    assert "[1] Frosty Franco-Russian relations" in r.stdout
    assert "building it" in r.stderr

    r = invoke("ask", "--json", "--corpus", str(article_corpus.corpus), "--index", str(article_corpus.index), "-",
               input="What is the capital of Australia?\nHow many Security Council members supported it?\n")
    assert r.exit_code == 0, r.output
    off, on = (json.loads(line) for line in r.stdout.splitlines())
    assert off["abstained"] and off["answer"] == ""
    assert not on["abstained"] and "Eleven" in on["answer"]


@pytest.mark.model
def test_real_model_refuses_a_fake_index(built_index, invoke):
    """The default model against an index built by another model: refused, with the rebuild command."""
    r = invoke("ask", "--corpus", str(built_index.corpus), "--index", str(built_index.index), QUESTION)
    assert_one_line_error(r, "built with model 'test-hash', not 'all-MiniLM-L6-v2'",
                          "herald build --model all-MiniLM-L6-v2")


# ------------------------------------------------------------------------- issue 10: bad bytes


def test_a_question_with_bytes_that_are_not_utf8_is_one_line(built_index, fake_embedder, invoke):
    bad = b"who vetoed \xff the resolution?".decode("utf-8", "surrogateescape")  # as Python hands argv over
    r = invoke("ask", *opts(built_index), bad)
    assert r.exit_code == 1 and "not UTF-8" in r.stderr and "Traceback" not in r.output


def test_one_bad_line_in_a_json_batch_is_an_error_object_and_the_rest_are_answered(built_index, fake_embedder, invoke):
    batch = b"Who vetoed the resolution?\nwho \xff\xfe vetoed?\nWhat did Greenspan say?\n"
    r = invoke("ask", "--json", *opts(built_index), "-", input=batch)
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    assert len(lines) == 3 and r.exit_code == 1
    assert "error" not in lines[0] and "not UTF-8" in lines[1]["error"] and "error" not in lines[2]
    assert lines[1]["question"] == "who \ufffd\ufffd vetoed?"


def test_a_single_json_question_that_cannot_be_asked_is_a_json_error(built_index, fake_embedder, invoke):
    r = invoke("ask", "--json", *opts(built_index), "   ")
    assert r.exit_code == 1 and json.loads(r.stdout)["error"].startswith("the question is empty")
