"""Corpus input at the edges (issue 17, items 6-8 and 10): huge paragraphs, names that are not UTF-8,
links beside the index, deep folders, stray bytes, broken front matter, sentence-like first lines and
silently damaged index files. Each case ends in seconds with a usable index or a clear message."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
from itertools import pairwise
from pathlib import Path

import pytest

from index.build import build_index
from index.ingest.chunking import split_sentences
from index.ingest.corpus import load_corpus
from index.store import MANIFEST, read_manifest

TESTS_DIR = Path(__file__).resolve().parent
QUESTION = "Who vetoed the resolution?"
PARAGRAPH = ("The council voted on Tuesday to close the old harbour bridge for repairs, after engineers found "
             "cracks in two of its supports during the annual inspection.")


def opts(paths, model="test-hash"):
    return ["--corpus", str(paths.corpus), "--index", str(paths.index), "--model", model]


def one_paragraph(chars: int) -> str:
    """Distinct sentences in one paragraph (no blank line anywhere), as one huge <p> or a scraped dump."""
    parts, n, i = [], 0, 0
    while n < chars:
        s = (f"Inspector {i} said the U.S. team found {i % 97} cracks in support {i % 13}, "
             f"and Mr. Hale asked for repairs before winter. ")
        parts.append(s)
        n += len(s)
        i += 1
    return "".join(parts)


# ------------------------------------------------------------------------ item 6: huge paragraphs


def test_a_two_megabyte_paragraph_builds_in_bounded_time(tmp_path):
    """pysbd is quadratic on one paragraph: 1.9 MB in one paragraph did not build in 400 s."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "dump.txt").write_text("Inspection dump\n\n" + one_paragraph(1_800_000) + "\n", encoding="utf-8")
    script = textwrap.dedent(f"""
        import sys
        sys.path[:0] = [{str(TESTS_DIR)!r}, {str(TESTS_DIR.parent)!r}]
        from conftest import HashEmbedder
        from index.build import build_index
        report = build_index({str(corpus)!r}, {str(tmp_path / 'index')!r}, HashEmbedder())
        print(report.documents, report.chunks)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    documents, chunks = map(int, done.stdout.split())
    assert documents == 1 and chunks > 5_000  # about 16,000 sentences, three to a chunk, one overlapping


def test_a_long_paragraph_is_split_where_pysbd_would_split_it():
    """Cutting a long paragraph into pieces first must not move a single sentence boundary."""
    import pysbd

    text = one_paragraph(30_000).strip()
    whole = [(s.start, s.end) for s in pysbd.Segmenter(language="en", clean=False, char_span=True).segment(text)]
    expected = []
    for a, b in whole:
        while a < b and text[a].isspace():
            a += 1
        while b > a and text[b - 1].isspace():
            b -= 1
        expected.append((a, b))
    assert split_sentences(text) == expected


def test_a_paragraph_without_any_space_is_cut_and_kept_whole():
    text = "x" * 120_000
    spans = split_sentences(text)
    assert spans[0][0] == 0 and spans[-1][1] == len(text)
    assert all(b == c for (_, b), (c, _) in pairwise(spans))  # nothing lost between pieces


# ---------------------------------------------------------------- item 7: names that are not UTF-8


def _bad_name(folder: Path) -> Path:
    raw = os.fsencode(folder) + b"/caf\xe9.txt"
    fd = os.open(raw, os.O_WRONLY | os.O_CREAT, 0o644)
    os.write(fd, b"Cafe owners protest\n\nThe cafe owners marched to the town hall on Friday.\n")
    os.close(fd)
    return Path(os.fsdecode(raw))


def test_a_file_name_that_is_not_utf8_is_read_and_shown_with_a_replacement(herald_paths, fake_embedder, invoke):
    _bad_name(herald_paths.corpus)
    (herald_paths.corpus / "b.txt").write_text("Bridge closed\n\n" + PARAGRAPH + "\n", encoding="utf-8")
    r = invoke("build", *opts(herald_paths))
    assert r.exit_code == 0, r.output
    manifest = read_manifest(herald_paths.index)
    assert "caf\ufffd.txt" in manifest["documents"]
    json.dumps(manifest, ensure_ascii=False).encode("utf-8")  # every id, title and path encodes
    r = invoke("info", *opts(herald_paths))
    assert r.exit_code == 0 and "caf\ufffd.txt" in r.stdout and "up to date" in r.stdout
    r = invoke("ask", *opts(herald_paths), "When did the cafe owners march to the town hall?")
    assert r.exit_code == 0 and "Friday" in r.stdout


def test_a_bad_name_added_beside_an_older_index_still_gets_an_answer(built_index, fake_embedder, invoke):
    _bad_name(built_index.corpus)
    r = invoke("ask", *opts(built_index), QUESTION)
    assert r.exit_code == 0 and "Russia" in r.stdout


def test_two_names_that_differ_only_in_bad_bytes_are_both_read(tmp_path):
    for name in (b"caf\xe9.txt", b"caf\xe8.txt"):
        fd = os.open(os.fsencode(tmp_path) + b"/" + name, os.O_WRONLY | os.O_CREAT, 0o644)
        os.write(fd, f"Title {name[3]}\n\nA different article number {name[3]} about cafes.\n".encode())
        os.close(fd)
    ids = [d.id for d in load_corpus(tmp_path)]
    assert len(ids) == 2 and len(set(ids)) == 2 and all(i.encode("utf-8") for i in ids)


# -------------------------------------------------------------------- item 8: links beside the index


def test_cleanup_never_follows_a_link_beside_the_index(built_index, fake_embedder, tmp_path):
    victim = tmp_path / "victim"
    victim.mkdir(mode=0o755)
    os.chmod(victim, 0o755)
    target = victim / "keep.txt"
    target.write_text("keep me", encoding="utf-8")
    os.chmod(target, 0o644)
    parent = built_index.index.parent
    os.chmod(parent, 0o755)
    name = built_index.index.name
    (parent / f".{name}.old-1-2").symlink_to(victim, target_is_directory=True)
    (parent / f".{name}.tmp-3-abc").symlink_to(target)
    (built_index.corpus / "new.md").write_text("# New\n\nA new article about harbours.\n", encoding="utf-8")
    build_index(built_index.corpus, built_index.index, fake_embedder)
    assert stat.S_IMODE(victim.stat().st_mode) == 0o755
    assert stat.S_IMODE(target.stat().st_mode) == 0o644 and target.read_text(encoding="utf-8") == "keep me"
    assert stat.S_IMODE(parent.stat().st_mode) == 0o755
    assert not os.path.lexists(parent / f".{name}.old-1-2") and not os.path.lexists(parent / f".{name}.tmp-3-abc")


# ------------------------------------------------------------------------ item 10: deep folders


def test_eleven_hundred_nested_folders_are_walked(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "top.txt").write_text("Top\n\n" + PARAGRAPH + "\n", encoding="utf-8")
    fd = os.open(corpus, os.O_RDONLY)
    try:
        for _ in range(1100):  # by descriptor: the full path would pass the length limit of some calls
            os.mkdir("d", dir_fd=fd)
            inner = os.open("d", os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = inner
        leaf = os.open("deep.txt", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        os.write(leaf, b"Deep\n\nThe ferry crews walked out at dawn.\n")
        os.close(leaf)
    finally:
        os.close(fd)
    try:
        ids = [d.id for d in load_corpus(corpus)]
        assert ids[-1] == "top.txt" and ids[0].endswith("/d/deep.txt") and ids[0].count("/") == 1100
    finally:
        _remove_deep(corpus)


def _remove_deep(corpus: Path) -> None:
    """shutil.rmtree recurses too: take the chain apart from the bottom."""
    depth = 0
    path = corpus
    while (path / "d").is_dir():
        path = path / "d"
        depth += 1
    for f in path.iterdir():
        f.unlink()
    for _ in range(depth):
        path.rmdir()
        path = path.parent


# ------------------------------------------------------------------------- item 10: one bad byte


def test_one_stray_byte_in_a_utf8_file_keeps_its_accents(tmp_path):
    raw = "Menu\n\nThe café — naïve as it sounds — opened on Monday.\n".encode()
    raw = raw.replace(b"Monday", b"Mon\xffday")
    (tmp_path / "cafe.txt").write_bytes(raw)
    (doc,) = load_corpus(tmp_path)
    assert "The café — naïve as it sounds — opened on Mon\ufffdday." in doc.text


# --------------------------------------------------------------- item 10: unclosed front matter


@pytest.mark.parametrize("head", ["---\n", "---\ntitle: Bridge closed\n\n", "---\nauthor: Ann\n"])
def test_unclosed_front_matter_never_makes_the_title_dashes(tmp_path, head):
    (tmp_path / "a.md").write_text(head + PARAGRAPH + "\n", encoding="utf-8")
    (doc,) = load_corpus(tmp_path)
    assert doc.title != "---" and "---" not in doc.text
    assert "cracks in two of its supports" in doc.text
    if "title:" in head:
        assert doc.title == "Bridge closed"


# ------------------------------------------------------------ item 10: a sentence on the first line


def test_a_txt_whose_first_line_is_a_sentence_can_answer_from_it(herald_paths, fake_embedder, invoke):
    (herald_paths.corpus / "council.txt").write_text(
        "The mayor resigned on Monday after the audit.\n\n" + PARAGRAPH + "\n\nWork starts in May.\n",
        encoding="utf-8")
    (herald_paths.corpus / "ferry.txt").write_text(
        "Ferry strike\n\nThe ferry crews walked out at dawn over pay and rosters.\n", encoding="utf-8")
    r = invoke("ask", *opts(herald_paths), "--json", "Who resigned after the audit?")
    assert r.exit_code == 0, r.output
    answer = json.loads(r.stdout)
    assert "mayor resigned" in answer["answer"] and not answer["abstained"]


def test_a_headline_on_the_first_line_is_still_not_repeated_in_the_body(tmp_path):
    (tmp_path / "a.txt").write_text("Bridge closed for repairs\n\n" + PARAGRAPH + "\n", encoding="utf-8")
    (doc,) = load_corpus(tmp_path)
    assert doc.title == "Bridge closed for repairs" and doc.text == PARAGRAPH


# -------------------------------------------------------------- item 10: info and flipped bytes


def test_info_catches_a_same_size_bit_flip_without_check(built_index, fake_embedder, invoke):
    path = built_index.index / "index.faiss"
    data = bytearray(path.read_bytes())
    data[len(data) - 100] ^= 0x40
    path.write_bytes(bytes(data))
    r = invoke("info", *opts(built_index))
    assert r.exit_code == 1 and "index.faiss" in r.stderr and "herald build" in r.stderr
    assert invoke("info", *opts(built_index), "--json").exit_code == 1


def test_info_says_checksums_were_verified(built_index, fake_embedder, invoke):
    r = invoke("info", *opts(built_index))
    assert r.exit_code == 0 and "checksum" in r.stdout.lower()
    assert json.loads(invoke("info", *opts(built_index), "--json").stdout)["checksums_verified"] is True


def test_info_on_a_big_index_says_plainly_it_did_not_hash(built_index, fake_embedder, invoke, monkeypatch):
    monkeypatch.setattr("index.engine.HASH_ON_DESCRIBE_BYTES", 10)
    r = invoke("info", *opts(built_index))
    assert r.exit_code == 0 and "not verified" in r.stdout and "--check" in r.stdout
    assert json.loads(invoke("info", *opts(built_index), "--json").stdout)["checksums_verified"] is False
    assert (built_index.index / MANIFEST).exists()
