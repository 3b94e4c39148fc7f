"""Loading and cleaning articles: what a reader calls the article survives, page furniture does not."""

from __future__ import annotations

import logging
import os

import pytest

from conftest import raises_said
from index.errors import CorpusError
from index.ingest.corpus import clean_text, corpus_fingerprints, load_corpus, parse_document


@pytest.fixture(scope="module")
def article(real_article):
    doc = parse_document(real_article, real_article.name, real_article.read_bytes())
    assert doc is not None
    return doc


BOILERPLATE = [
    "Share this article", "Comments", "Close Button", "Copy/paste the article video embed link",
    "Copy to clipboard", "Copied", "ADVERTISEMENT", "Copyright", "By Euronews", "By\u00a0Euronews",
    "<a", "</a>", "</p>", "<", ">", "&mdash;", "&amp;", "pic.twitter.com", "t.co/", "https://",
    "You might also like", "Putin pulls out of Paris trip", "Macron eyes", "Marine Le Pen",
]


@pytest.mark.parametrize("junk", BOILERPLATE)
def test_boilerplate_is_removed(article, junk):
    assert junk.casefold() not in article.text.casefold()


TWEET_WORDS = [
    "Le veto russe au conseil de sécurité des Nations unies est un cadeau aux terroristes",
    "Bloody. Hell.",
    "will participate on Saturday October 8",
    "Processus de paix",
    "U.N. Security Council meeting",
]


@pytest.mark.parametrize("words", TWEET_WORDS)
def test_tweet_words_survive(article, words):
    assert words in article.text


def test_article_body_survives_whole(article):
    text = article.text
    assert text.startswith("The Chief French Diplomat Jean-Marc Ayrault is leading the charge to save aleppo")
    assert "Eleven of the fifteen Security Council members supported the resolution drafted by France " \
           "but Russia vetoed it." in text
    assert "“a partner country, not an adversary”" in text
    assert text.rstrip().endswith("Moscow would be able to block that with a veto as well.")
    # the dash that &mdash; stood for is kept as a character
    assert "— Jean-Marc Ayrault (jeanmarcayrault) October 10, 2016" in text


def test_title_from_first_line_not_repeated_in_body(article):
    assert article.title == "Frosty Franco-Russian relations"
    assert "Frosty Franco-Russian relations" not in article.text


def test_paragraphs_are_blank_line_separated(article):
    paragraphs = article.text.split("\n\n")
    assert len(paragraphs) > 10
    assert all(p == p.strip() and p and "\n" not in p for p in paragraphs)


def test_fingerprint_is_stable_and_content_based(article, real_article, tmp_path):
    again = parse_document(real_article, "x", real_article.read_bytes())
    assert again.fingerprint == article.fingerprint
    changed = parse_document(real_article, "x", real_article.read_bytes() + b"\nOne more line.\n")
    assert changed.fingerprint != article.fingerprint


def test_markdown_front_matter(tmp_path):
    path = tmp_path / "story.md"
    path.write_text(
        "---\ntitle: \"Veto at the U.N.\"\nurl: https://example.org/veto\ndate: 2016-10-08\nauthor: Jane\n---\n"
        "# Veto at the U.N.\n\n## What happened\n\nRussia vetoed the draft resolution on Saturday night.\n",
        encoding="utf-8",
    )
    (doc,) = load_corpus(tmp_path)
    assert doc.id == "story.md"
    assert doc.title == "Veto at the U.N."
    assert doc.url == "https://example.org/veto"
    assert doc.date == "2016-10-08"
    assert doc.meta == {"author": "Jane"}
    assert "#" not in doc.text and "---" not in doc.text
    assert "What happened" not in doc.text  # subheadings are dropped: glued to a paragraph they were quoted
    assert "Russia vetoed the draft resolution on Saturday night." in doc.text
    assert not doc.text.startswith("Veto at the U.N.")


def test_text_with_front_matter(tmp_path):
    (tmp_path / "a.txt").write_text("---\ntitle: Given title\n---\nFirst line is body here.\n", encoding="utf-8")
    (doc,) = load_corpus(tmp_path)
    assert doc.title == "Given title"
    assert doc.text == "First line is body here."


HTML = """<!doctype html>
<html><head><title>Page title | Site</title>
<meta property="og:url" content="https://example.org/story">
<meta property="article:published_time" content="2016-10-10">
<script>var ad = "ADVERTISEMENT buy now";</script><style>p { color: red }</style></head>
<body><nav><a href="/">Home</a> <a href="/world">World news menu</a></nav>
<article><h1>Russia vetoes &ldquo;Aleppo&rdquo; resolution</h1>
<p>Eleven of the fifteen members supported it &mdash; but Russia vetoed it.</p>
<p>France&#39;s minister said it was a &quot;moment of truth&quot;. Prices rose 5 &lt; 6 and 7 &gt; 3.</p>
<!-- a comment that must not show -->
<p>ADVERTISEMENT</p></article>
<footer>Copyright Example 2016 footer text</footer></body></html>
"""


def test_html_loading(tmp_path):
    (tmp_path / "story.html").write_text(HTML, encoding="utf-8")
    (doc,) = load_corpus(tmp_path)
    assert doc.title == "Russia vetoes “Aleppo” resolution"
    assert doc.url == "https://example.org/story"
    assert doc.date == "2016-10-10"
    assert "Eleven of the fifteen members supported it — but Russia vetoed it." in doc.text
    assert "France's minister said it was a \"moment of truth\"." in doc.text
    assert "5 < 6 and 7 > 3" in doc.text  # decoded entities are text, not tags to strip
    for junk in ("var ad", "color: red", "Home", "World news menu", "comment", "footer text", "ADVERTISEMENT",
                 "&mdash;", "&quot;", "&#39;", "<p>", "Page title"):
        assert junk not in doc.text


def test_html_title_falls_back_to_title_tag(tmp_path):
    (tmp_path / "p.htm").write_text("<html><head><title> The  title </title></head><body><p>Body text here.</p>"
                                    "</body></html>", encoding="utf-8")
    (doc,) = load_corpus(tmp_path)
    assert doc.title == "The title"
    assert doc.text == "Body text here."


def test_angle_brackets_in_plain_text_survive(tmp_path):
    assert clean_text("Growth was < 2% while inflation was > 3%.") == "Growth was < 2% while inflation was > 3%."
    assert clean_text("A <b>bold</b> claim.") == "A bold claim."


def test_trailer_cuts_everything_after():
    raw = "Body one.\n\nRelated articles\n\nOther story one\n\nOther story two\n"
    assert clean_text(raw) == "Body one."


# ----------------------------------------------------------------------------- skipped files


def test_bad_files_are_skipped_with_a_warning_naming_them(tmp_path, caplog):
    (tmp_path / "good.txt").write_text("Title\n\nRussia vetoed the resolution.\n", encoding="utf-8")
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "blank.md").write_bytes(b"  \n\n \n")
    (tmp_path / "binary.txt").write_bytes(bytes(range(256)) * 4)
    (tmp_path / "latin1-heavy.txt").write_bytes(("Titre\n\n" + "Café à é è ü ö " * 30).encode("latin-1") + b"\x81")
    (tmp_path / "ignored.pdf").write_bytes(b"%PDF-1.4")
    (tmp_path / ".hidden.txt").write_text("Hidden\n\nNot an article.\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="index.ingest.corpus"):
        docs = load_corpus(tmp_path)
    assert [d.id for d in docs] == ["good.txt"]
    warned = "\n".join(r.getMessage() for r in caplog.records)
    for name in ("empty.txt", "blank.md", "binary.txt", "latin1-heavy.txt"):
        assert name in warned, f"no warning names {name}"
    assert "ignored.pdf" not in warned and ".hidden" not in warned


def test_single_latin1_byte_is_decoded_with_fallback(tmp_path, caplog):
    (tmp_path / "pound.txt").write_bytes("Prices\n\nThe ticket cost £5 in London.\n".encode("latin-1"))
    with caplog.at_level(logging.WARNING, logger="index.ingest.corpus"):
        (doc,) = load_corpus(tmp_path)
    assert "The ticket cost £5 in London." in doc.text
    assert any("pound.txt" in r.getMessage() for r in caplog.records)


def test_utf8_bom_is_not_part_of_the_title(tmp_path):
    (tmp_path / "bom.txt").write_bytes("\ufeffBOM title\n\nBody sentence here.\n".encode("utf-8"))
    (doc,) = load_corpus(tmp_path)
    assert doc.title == "BOM title"


def test_subfolders_give_path_ids(tmp_path):
    (tmp_path / "world").mkdir()
    (tmp_path / "world" / "a.txt").write_text("A\n\nText of a.\n", encoding="utf-8")
    (tmp_path / "b.txt").write_text("B\n\nText of b.\n", encoding="utf-8")
    assert [d.id for d in load_corpus(tmp_path)] == ["b.txt", "world/a.txt"]


def test_files_are_listed_in_path_order_and_links_to_files_are_read(tmp_path):
    """Ids sort part by part as paths do ("a/z" before "a-b", not after it as strings would); a link to an
    article is read, a broken or looping link is no article."""
    from index.ingest.corpus import corpus_files

    for rel in ("a/z.txt", "a-b.txt", "a.txt", "a/b/c.md", "B.txt"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(f"{rel}\n\nText of {rel}.\n", encoding="utf-8")
    elsewhere = tmp_path.parent / f"{tmp_path.name}-elsewhere.txt"
    elsewhere.write_text("Linked\n\nA linked article.\n", encoding="utf-8")
    (tmp_path / "linked.txt").symlink_to(elsewhere)
    (tmp_path / "broken.txt").symlink_to(tmp_path / "nowhere.txt")
    (tmp_path / "loop.txt").symlink_to(tmp_path / "loop.txt")
    ids = [doc_id for doc_id, _ in corpus_files(tmp_path)]
    assert ids == ["B.txt", "a/b/c.md", "a/z.txt", "a-b.txt", "a.txt", "linked.txt"]
    assert [d.title for d in load_corpus(tmp_path)][-1] == "Linked"


# ------------------------------------------------------------------------------- corpus errors


def test_empty_corpus_is_a_clear_error(tmp_path):
    with raises_said(CorpusError, "no articles found"):
        load_corpus(tmp_path)


def test_corpus_of_only_bad_files_is_a_clear_error(tmp_path):
    (tmp_path / "empty.txt").write_bytes(b"")
    with raises_said(CorpusError, "no articles found"):
        load_corpus(tmp_path)


def test_missing_corpus_folder_is_a_clear_error(tmp_path):
    with raises_said(CorpusError, "does not exist"):
        load_corpus(tmp_path / "nope")
    with raises_said(CorpusError, "does not exist"):
        corpus_fingerprints(tmp_path / "nope")


def test_corpus_path_that_is_a_file_is_a_clear_error(tmp_path):
    f = tmp_path / "file.txt"
    f.write_text("x", encoding="utf-8")
    with raises_said(CorpusError, "not a folder"):
        load_corpus(f)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads folders whatever their mode")
def test_unreadable_corpus_folder_is_a_clear_error(tmp_path):
    corpus = tmp_path / "locked"
    corpus.mkdir()
    (corpus / "a.txt").write_text("A\n\nText.\n", encoding="utf-8")
    corpus.chmod(0)
    try:
        with raises_said(CorpusError, "cannot read"):
            load_corpus(corpus)
    finally:
        corpus.chmod(0o755)


def test_folder_without_read_permission_is_a_clear_error(tmp_path, monkeypatch):
    """The same check as above, simulated so it also runs as root."""
    import index.ingest.corpus

    (tmp_path / "a.txt").write_text("A\n\nText.\n", encoding="utf-8")
    monkeypatch.setattr(index.ingest.corpus.os, "access", lambda path, mode: False)
    with raises_said(CorpusError, "cannot read corpus folder .*permission"):
        load_corpus(tmp_path)


# ----------------------------------------------------------------------- scrape fragments re-joined


def test_tweet_signature_and_colon_lead_in_join_their_tweet():
    raw = ("Hospital in #Aleppo in 2 words:\n\nBloody. Hell.\n\n— bint AbuBakr (@itsmenanice) October 6, 2016\n\n"
           "The next paragraph is ordinary prose about the war.")
    paras = clean_text(raw).split("\n\n")
    assert paras == ["Hospital in #Aleppo in 2 words: Bloody. Hell. — bint AbuBakr (@itsmenanice) October 6, 2016",
                     "The next paragraph is ordinary prose about the war."]


def test_caption_above_a_quotation_becomes_its_speaker_label():
    raw = ("Jean-Marc Ayrault\n\n“There are war crimes, and it’s obvious.”"
           "\n\nA caption of a photo\n\nPlain text follows.")
    paras = clean_text(raw).split("\n\n")
    assert paras[0] == "Jean-Marc Ayrault: “There are war crimes, and it’s obvious.”"
    assert paras[1:] == ["A caption of a photo", "Plain text follows."]  # no quotation: left alone


def test_several_short_lines_in_a_row_leave_no_marker_in_the_text():
    """A sports fixture block (BBC sport/179.txt): three short lines in a row once left a NUL marker between
    the second and third ("Tuesday, 1 March\0caption2000 GMT")."""
    raw = "Blackburn v Arsenal\n\nEwood Park\n\nTuesday, 1 March\n\n2000 GMT\n\nThe match report follows here."
    text = clean_text(raw)
    assert "\0" not in text and "caption" not in text
    assert text.split("\n\n") == ["Blackburn v Arsenal", "Ewood Park", "Tuesday, 1 March", "2000 GMT",
                                    "The match report follows here."]


def test_an_embedded_tweet_is_one_sentence_unit(real_article):
    from index.ingest.chunking import ChunkSettings, document_sentences

    doc = load_corpus(real_article.parent)[0]
    sentences = [doc.text[a:b] for sec in document_sentences(doc, ChunkSettings()) for a, b in sec]
    tweet = "Hospital in #Aleppo#Syria in 2 words: Bloody. Hell. — bint AbuBakr (@itsmenanice) October 6, 2016"
    assert tweet in sentences
