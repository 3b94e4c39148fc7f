"""The fake news website (tests/fakes/news.py) itself: every route, conditional requests, content swaps,
and the saved pages' own promises (size, metadata, the near-duplicate wire story). Only urllib, with
proxies switched off so every request stays on 127.0.0.1."""

from __future__ import annotations

import difflib
import re
import threading
import time
import urllib.error
import urllib.request
from email.message import Message

import pytest

from fakes.news import DATA_DIR, HUGE_BYTES, fake_news_server

UA = "HeraldTest/1.0"
ARTICLES = ["harbour-bridge-closure.html", "ferry-strike.html", "ferry-strike-updated.html",
            "wire-story-outlet-a.html", "wire-story-outlet-b.html"]


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        return None


_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
_no_redirect = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect)


def get(url: str, headers: dict[str, str] | None = None, timeout: float = 5.0,
        follow: bool = True) -> tuple[int, Message, bytes]:
    """(status, headers, body) of a GET; an HTTP error status is returned, not raised."""
    req = urllib.request.Request(url, headers={"User-Agent": UA, **(headers or {})})
    try:
        with (_opener if follow else _no_redirect).open(req, timeout=timeout) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.headers, exc.read()


def paragraphs(html: str) -> list[str]:
    body = html.split("<article", 1)[1].split("</article>", 1)[0]
    return re.findall(r"<p>(.*?)</p>", body, flags=re.S)


# ------------------------------------------------------------------------------------------ pages


@pytest.mark.parametrize("name", ARTICLES + ["section-front.html"])
def test_saved_pages_are_whole_pages_of_a_realistic_size(name):
    html = (DATA_DIR / name).read_text(encoding="utf-8")
    assert 5_000 <= len(html.encode()) <= 15_000
    for part in ("<title>", 'property="og:site_name"', 'property="og:title"', "<nav", "<script", "cookie",
                 "newsletter", "<footer"):
        assert part in html, part
    if name != "section-front.html":
        assert all(p in html for p in ("Share on Twitter", "Share on Facebook", "comments", "<time"))
        assert '"@type":"NewsArticle"' in html.replace(" ", "") and 'property="article:published_time"' in html
        assert 5 <= len(paragraphs(html)) <= 9
    else:
        assert "<article" not in html and "NewsArticle" not in html and html.count("<a href=") > 40


def test_the_wire_story_is_a_near_duplicate_with_its_own_headline():
    a, b = ((DATA_DIR / f"wire-story-outlet-{x}.html").read_text(encoding="utf-8") for x in "ab")
    pa, pb = paragraphs(a), paragraphs(b)
    assert pa[0] != pb[0] and pa[1:] != pb[1:] and sum(x == y for x, y in zip(pa, pb)) >= 6
    assert difflib.SequenceMatcher(None, " ".join(pa), " ".join(pb)).ratio() > 0.93
    assert re.search(r"<title>(.*?)</title>", a)[1] != re.search(r"<title>(.*?)</title>", b)[1]


def test_articles_are_served_with_validators_and_the_base_substituted():
    with fake_news_server() as site:
        for name in ARTICLES:
            status, headers, body = get(site.url(f"/news/{name}"))
            assert status == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
            assert headers["ETag"].startswith('"') and headers["Last-Modified"].endswith("GMT")
            text = body.decode("utf-8")
            canonical = site.url("/news/" + name.replace("-updated", ""))  # an update keeps its URL
            assert "{BASE}" not in text and f'<link rel="canonical" href="{canonical}">' in text
        status, _, body = get(site.url("/news/harbour-bridge-closure.html"))
        assert b"Mireille Okonkwo" in body and b"14.2 million euros" in body
        assert site.hits["/news/harbour-bridge-closure.html"] == 2 and site.hits["/news/nothing.html"] == 0
        assert site.last_headers["/news/harbour-bridge-closure.html"].get("user-agent") == UA
        assert site.requests[0] == ("GET", f"/news/{ARTICLES[0]}")


def test_304_for_a_matching_etag_or_date_and_200_otherwise():
    with fake_news_server() as site:
        url = site.url("/news/ferry-strike.html")
        _, headers, _ = get(url)
        etag, modified = headers["ETag"], headers["Last-Modified"]
        assert get(url, {"If-None-Match": etag})[0] == 304
        assert get(url, {"If-None-Match": f'"other", W/{etag}'})[0] == 304
        assert get(url, {"If-Modified-Since": modified})[0] == 304
        assert get(url, {"If-None-Match": '"stale"'})[0] == 200
        assert get(url, {"If-None-Match": '"stale"', "If-Modified-Since": modified})[0] == 200  # the ETag decides
        assert get(url, {"If-Modified-Since": "Mon, 01 Jan 2024 00:00:00 GMT"})[0] == 200
        assert get(url, {"If-Modified-Since": "not a date"})[0] == 200
        assert site.hits["/news/ferry-strike.html"] == 8


def test_swapping_a_page_changes_its_etag_and_date():
    with fake_news_server() as site:
        url = site.url("/news/ferry-strike.html")
        _, headers, old = get(url)
        site.serve("/news/ferry-strike.html", "ferry-strike-updated.html")
        status, new_headers, new = get(url, {"If-None-Match": headers["ETag"]})
        assert status == 200 and new_headers["ETag"] != headers["ETag"]
        assert b"ended after two days" in new and b"ended after two days" not in old
        assert get(url, {"If-Modified-Since": headers["Last-Modified"]})[0] == 200
        assert get(url, {"If-None-Match": new_headers["ETag"]})[0] == 304
        site.serve("/feed.xml", body="<rss><channel><item>", content_type="application/rss+xml")
        assert get(site.url("/feed.xml"))[2] == b"<rss><channel><item>"
        site.remove("/news/ferry-strike.html")
        assert get(url)[0] == 404


# ------------------------------------------------------------------------------------------ feeds


def test_feeds_list_the_sites_articles_with_dates():
    with fake_news_server() as site:
        status, headers, body = get(site.url("/feed.xml"))
        rss = body.decode("utf-8")
        assert status == 200 and headers["Content-Type"] == "application/rss+xml"
        assert re.findall(r"<link>(.*?)</link>", rss)[1:] == [site.url("/news/wire-story-outlet-a.html"),
                                                              site.url("/news/harbour-bridge-closure.html")]
        assert rss.count("<pubDate>") == 2 and "{BASE}" not in rss
        status, headers, body = get(site.url("/atom.xml"))
        atom = body.decode("utf-8")
        assert status == 200 and headers["Content-Type"] == "application/atom+xml"
        assert re.findall(r'<link rel="alternate" type="text/html" href="(.*?)"', atom)[1:] == [
            site.url("/news/ferry-strike.html"), site.url("/news/wire-story-outlet-b.html")]
        assert get(site.url("/atom.xml"), {"If-None-Match": headers["ETag"]})[0] == 304


# ------------------------------------------------------------------------------------- the rest


def test_section_image_missing_error_and_redirects():
    with fake_news_server() as site:
        status, headers, body = get(site.url("/section"))
        assert status == 200 and b"Local news | Coastal Times" in body
        status, headers, body = get(site.url("/image.png"))
        assert status == 200 and headers["Content-Type"] == "image/png" and body.startswith(b"\x89PNG")
        assert get(site.url("/missing.html"))[0] == 404
        assert get(site.url("/error.html"))[0] == 500
        status, headers, _ = get(site.url("/redirect"), follow=False)
        assert status == 302 and headers["Location"] == site.url("/news/harbour-bridge-closure.html")
        status, _, body = get(site.url("/redirect"))
        assert status == 200 and b"Mireille Okonkwo" in body
        assert get(site.url("/redirect-loop"))[0] == 302  # urllib gives up on the loop


def test_huge_pages_are_over_six_megabytes():
    with fake_news_server() as site:
        status, headers, body = get(site.url("/huge.html"))
        assert status == 200 and int(headers["Content-Length"]) == len(body) == HUGE_BYTES > 6 * 1024 * 1024
        assert headers["Content-Type"].startswith("text/html")
        status, headers, body = get(site.url("/huge-chunked.html"))
        assert headers["Content-Length"] is None and headers["Transfer-Encoding"] == "chunked"
        assert len(body) == HUGE_BYTES and body.endswith(b"</html>\n")
        req = urllib.request.Request(site.url("/huge.html"))  # a reader that stops early leaves the server fine
        with _opener.open(req, timeout=5) as r:
            r.read(1000)
        assert get(site.url("/news/ferry-strike.html"))[0] == 200


def test_slow_page_times_out_a_short_client_and_does_not_hold_up_shutdown():
    with fake_news_server(slow_seconds=0.3) as site:
        status, _, body = get(site.url("/slow.html"), timeout=5)
        assert status == 200 and b"Mireille Okonkwo" in body
        with pytest.raises((TimeoutError, urllib.error.URLError)):
            get(site.url("/slow.html"), timeout=0.1)
    started = time.monotonic()
    with fake_news_server() as site:  # 5 s by default: leaving must not wait for it
        asked = threading.Thread(target=_ask_and_give_up, args=(site.url("/slow.html"),), daemon=True)
        asked.start()
        time.sleep(0.1)
    assert time.monotonic() - started < 2 and site.hits["/slow.html"] == 1
    asked.join(5)


def _ask_and_give_up(url: str) -> None:
    try:
        get(url, timeout=0.2)
    except OSError:  # a timeout, or the server hanging up as it stops
        pass


# --------------------------------------------------------------------- hostile routes (issue 17)


def test_the_bomb_is_small_on_the_wire_and_a_gigabyte_decoded():
    import gzip
    import zlib

    from fakes.news import BOMB_DECODED_BYTES, bomb_body

    with fake_news_server() as site:
        req = urllib.request.Request(site.url("/bomb.html"), headers={"Accept-Encoding": "gzip"})
        with _opener.open(req, timeout=10) as r:
            assert r.headers["Content-Encoding"] == "gzip, gzip" and r.headers["Content-Type"].startswith("text/html")
            body = r.read()  # urllib does not decode: the raw body
    assert body == bomb_body() and len(body) < 2000
    inner = gzip.decompress(body)
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    total, data = 0, inner
    while data:  # the inner layer, decoded in bounded steps and counted
        total += len(d.decompress(data, 1 << 24))
        data = d.unconsumed_tail
    assert total == BOMB_DECODED_BYTES


def test_the_trickle_sends_a_byte_at_a_time():
    with fake_news_server() as site:
        site.trickle_seconds = 0.05
        req = urllib.request.Request(site.url("/trickle.html"))
        started = time.monotonic()
        with _opener.open(req, timeout=5) as r:
            first = r.read(10)
        assert first == (DATA_DIR / "harbour-bridge-closure.html").read_bytes()[:10]
        assert time.monotonic() - started >= 0.4  # ten bytes, 0.05 s apart


def test_redirect_to_any_location_and_extra_headers():
    with fake_news_server() as site:
        site.redirect("/go", "ftp://10.0.0.1/x")
        status, headers, _ = get(site.url("/go"), follow=False)
        assert status == 302 and headers["Location"] == "ftp://10.0.0.1/x"
        site.serve("/enc.html", body="<p>x</p>", content_type="text/html", headers={"X-Test": "yes"})
        assert get(site.url("/enc.html"))[1]["X-Test"] == "yes"
