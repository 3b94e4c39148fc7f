"""News in (issue 11): `herald add URL`, feeds, `herald watch`, outlet and date in answers, near-duplicate
stories shown once, "latest" questions. Everything is served by a fake news site on 127.0.0.1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fakes.news import fake_news_server
from index import EngineConfig, FetchSettings, add_url, open_engine
from index.ingest.web import article_path, extract


def opts(paths, model="test-hash"):
    return ["--corpus", str(paths.corpus), "--index", str(paths.index), "--model", model]


# The fake site is on 127.0.0.1, which Herald refuses to fetch unless it is allowed.
LOCAL = FetchSettings(allow_private="127.0.0.1")


def env(paths) -> dict[str, str]:
    return {"HERALD_FEED_STATE": str(paths.root / "feeds.json"), "HERALD_FETCH_TIMEOUT": "2",
            "HERALD_FETCH_ALLOW_PRIVATE": "127.0.0.1"}


@pytest.fixture
def site():
    with fake_news_server(slow_seconds=4) as s:
        yield s


# ---------------------------------------------------------------------------------- herald add URL


def test_add_then_ask_answers_from_that_page_with_outlet_and_date(built_index, fake_embedder, invoke, site):
    r = invoke("add", *opts(built_index), site.url("/news/harbour-bridge-closure.html"), env=env(built_index))
    assert r.exit_code == 0, r.output
    assert "added: Valmouth harbour bridge closed" in r.stdout and "Coastal Times" in r.stdout
    assert "Index updated" in r.stdout
    r = invoke("ask", *opts(built_index), "Who found the cracks in the harbour bridge?", env=env(built_index))
    assert r.exit_code == 0, r.output
    assert "Mireille Okonkwo" in r.stdout
    assert "(Coastal Times, 5 Mar 2024)" in r.stdout  # the source line says who reported it and when
    assert "HeraldBot" in site.last_headers["/news/harbour-bridge-closure.html"]["User-Agent"]


def test_the_saved_article_is_markdown_with_front_matter_and_no_page_furniture(tmp_path, site):
    res = add_url(tmp_path, site.url("/news/harbour-bridge-closure.html"), LOCAL)
    text = res.path.read_text(encoding="utf-8")
    assert text.startswith("---\ntitle: Valmouth harbour bridge closed")
    assert "\noutlet: Coastal Times\n" in text and "\ndate: 2024-03-05\n" in text
    assert "14.2 million euros" in text
    for furniture in ("cookie", "Share on", "Related articles", "Sign up", "newsletter"):
        assert furniture.lower() not in text.lower(), furniture


def test_adding_the_same_url_again_changes_nothing_and_a_changed_page_is_updated(tmp_path, site):
    url = site.url("/news/ferry-strike.html")
    first = add_url(tmp_path, url, LOCAL)
    again = add_url(tmp_path, url, LOCAL)
    assert (first.status, again.status) == ("added", "unchanged") and first.path == again.path
    site.serve("/news/ferry-strike.html", "ferry-strike-updated.html")
    updated = add_url(tmp_path, url, LOCAL)
    assert updated.status == "updated" and updated.path == first.path
    assert "two days" in updated.path.read_text(encoding="utf-8")


@pytest.mark.parametrize("path, fragment", [
    ("/missing.html", "no page there (HTTP 404)"),
    ("/section", "no article text"),
    ("/image.png", "not a web page"),
    ("/huge.html", "too large"),
    ("/slow.html", "did not answer in time"),
])
def test_failures_are_one_clear_line_and_the_corpus_is_untouched(built_index, fake_embedder, invoke, site,
                                                                path, fragment):
    before = sorted(p.name for p in built_index.corpus.rglob("*"))
    r = invoke("add", *opts(built_index), site.url(path), env=env(built_index))
    assert r.exit_code == 1 and fragment in r.stdout, r.output
    assert "Traceback" not in r.output
    assert sorted(p.name for p in built_index.corpus.rglob("*")) == before


def test_a_bad_address_and_an_unreachable_host_fail_clearly(tmp_path):
    assert add_url(tmp_path, "ftp://example.org/a").error.problem == "bad_url"
    res = add_url(tmp_path, "http://127.0.0.1:9/nothing", FetchSettings(timeout=1, allow_private="127.0.0.1"))
    assert res.status == "failed" and res.error.problem in ("unreachable", "timeout")  # port 9: nobody there
    assert "Error" not in str(res.error)  # plain words, not an exception's class name
    assert add_url(tmp_path, "http://127.0.0.1:9/nothing").error.problem == "refused"  # not allowed by default


def test_a_redirect_is_followed_and_saved_under_the_final_address(tmp_path, site):
    res = add_url(tmp_path, site.url("/redirect"), LOCAL)
    assert res.status == "added" and res.path == article_path(tmp_path, site.url("/news/harbour-bridge-closure.html"))


# ------------------------------------------------------------------------------------------- feeds


def test_a_feed_adds_its_new_items_once(built_index, fake_embedder, invoke, site):
    r = invoke("add", "--feed", *opts(built_index), site.url("/feed.xml"), env=env(built_index))
    assert r.exit_code == 0, r.output
    assert "2 new item(s)" in r.stdout and r.stdout.count("added:") == 2
    r = invoke("add", "--feed", *opts(built_index), site.url("/feed.xml"), env=env(built_index))
    assert r.exit_code == 0 and "unchanged since the last poll" in r.stdout  # a 304: nothing fetched again
    assert site.hits["/news/harbour-bridge-closure.html"] == 1
    state = json.loads((built_index.root / "feeds.json").read_text(encoding="utf-8"))
    assert len(state[site.url("/feed.xml")]["seen"]) == 2


def test_watch_once_polls_the_configured_feeds_and_updates_the_index(built_index, fake_embedder, invoke, site):
    e = {**env(built_index), "HERALD_FEEDS": f"{site.url('/feed.xml')}, {site.url('/atom.xml')}"}
    r = invoke("watch", "--once", *opts(built_index), env=e)
    assert r.exit_code == 0, r.output
    assert r.stdout.count("added:") == 4 and "Index updated" in r.stdout
    r = invoke("ask", "--json", *opts(built_index), "How many ferry crew members walked out in the strike?", env=e)
    top = json.loads(r.stdout)["sources"][0]
    assert "Ferry" in top["title"] and top["outlet"] == "Northern Ledger" and top["date"].startswith("2024-03-07")


def test_watch_without_feeds_says_what_to_set(built_index, fake_embedder, invoke):
    r = invoke("watch", "--once", *opts(built_index))
    assert r.exit_code == 2 and "HERALD_FEEDS" in r.output


# ---------------------------------------------------------------- near duplicates and "the latest"


def test_a_wire_story_from_two_outlets_is_one_source_also_reported_by_the_other(built_index, fake_embedder, site):
    for name in ("wire-story-outlet-a", "wire-story-outlet-b"):
        assert add_url(built_index.corpus, site.url(f"/news/{name}.html"), LOCAL).status == "added"
    engine = open_engine(EngineConfig(corpus=built_index.corpus, index_dir=built_index.index, model="test-hash"))
    ans = engine.ask("How many people fled the wildfire near Brennick?")
    wire = [s for s in ans.sources if "wildfire" in s.title.lower() or "Brennick" in s.title]
    assert len({s.doc_id for s in wire}) == 1  # the second outlet's copy is not a second source
    assert wire[0].also_reported_by and wire[0].also_reported_by[0] in ("Coastal Times", "Northern Ledger")
    assert wire[0].also_reported_by[0] != wire[0].outlet


def test_html_files_dropped_into_the_corpus_go_through_the_extractor(tmp_path):
    from index.ingest.corpus import load_corpus

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    src = Path(__file__).parent / "data" / "news" / "harbour-bridge-closure.html"
    (corpus / "bridge.html").write_bytes(src.read_bytes())
    [doc] = load_corpus(corpus)
    assert "Mireille Okonkwo" in doc.text and "cookie" not in doc.text.lower()
    assert doc.date == "2024-03-05" and doc.meta.get("outlet") == "Coastal Times"


def test_extract_refuses_a_listing_page():
    from index import FetchError

    html = (Path(__file__).parent / "data" / "news" / "section-front.html").read_text(encoding="utf-8")
    with pytest.raises(FetchError) as info:
        extract(html, "http://127.0.0.1/section")
    assert info.value.problem == "not_article"


def test_a_question_about_the_latest_prefers_the_newer_article(herald_paths, fake_embedder):
    (herald_paths.corpus / "old.md").write_text(
        "---\ntitle: Council budget debate\ndate: 2024-01-10\noutlet: Coastal Times\n---\n"
        "The council debated the harbour budget on Monday. Members argued about the cost of the bridge.\n",
        encoding="utf-8")
    (herald_paths.corpus / "new.md").write_text(
        "---\ntitle: Council budget vote\ndate: 2024-03-10\noutlet: Northern Ledger\n---\n"
        "The council voted on the harbour budget on Friday. Members approved the cost of the bridge.\n",
        encoding="utf-8")
    engine = open_engine(EngineConfig(corpus=herald_paths.corpus, index_dir=herald_paths.index, model="test-hash"))
    plain = engine.ask("What happened with the council harbour budget?")
    latest = engine.ask("What is the latest on the council harbour budget?")
    assert latest.sources[0].date == "2024-03-10"
    assert {s.doc_id for s in plain.sources} == {"old.md", "new.md"}  # both close: the date decides
