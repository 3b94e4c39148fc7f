"""What Herald refuses to fetch, and how a fetch is bounded (issue 17, items 1-3, 9, 10).

The fetch-policy table: every address form (literal IPv4/IPv6/IPv4-mapped, short and decimal forms,
``localhost``), names answered by a stub resolver (private, link-local, multicast, reserved, unspecified,
public), each redirect (to an internal address, to another scheme), and the allow-list widening it by
address and by network. No test connects anywhere but 127.0.0.1: ``connections`` records every other
connection attempt and refuses it, and a refused address must not even be attempted.

Then the decompression bomb, the trickling server, malformed URLs, credentials, the 2 MB article limit,
one-sentence paragraphs, and the feeds: one client per poll, the per-poll cap, relative links, failed
items retried with back-off without blocking the ETag, the state file validated per entry and kept
beside the index.
"""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from fakes.news import fake_news_server
from index import FetchError, FetchSettings, add_url
from index.ingest.corpus import MAX_ARTICLE_BYTES
from index.ingest.feeds import RETRY_AFTER, RETRY_LIMIT, FeedStates, poll_feed
from index.ingest.web import Article, extract, fetch, save_article

LOCAL = FetchSettings(timeout=5, allow_private="127.0.0.1")
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def site():
    with fake_news_server(slow_seconds=4) as s:
        yield s


class Connections:
    """Every socket.create_connection: to 127.0.0.1 it goes through, anywhere else it is recorded and refused."""

    def __init__(self, real) -> None:
        self.real, self.elsewhere, self.local = real, [], []

    def __call__(self, address, *args, **kwargs):
        if address[0] == "127.0.0.1":
            self.local.append(address)
            return self.real(address, *args, **kwargs)
        self.elsewhere.append(address)
        raise ConnectionRefusedError(111, "Connection refused (test: never leave 127.0.0.1)")


@pytest.fixture
def connections(monkeypatch) -> Connections:
    rec = Connections(socket.create_connection)
    monkeypatch.setattr(socket, "create_connection", rec)
    return rec


def stub(*answers: str, calls: list | None = None):
    """A resolver answering every name with ``answers`` (and recording each question in ``calls``)."""
    def resolve(host: str, port: int) -> list[str]:
        if calls is not None:
            calls.append(host)
        return list(answers)
    return resolve


# ------------------------------------------------------------------------------ the address table


@pytest.mark.parametrize("host", [
    "127.0.0.1", "127.1", "2130706433", "0x7f000001", "localhost", "LOCALHOST", "[::1]",
    "[::ffff:127.0.0.1]", "[::ffff:7f00:1]", "0.0.0.0", "[::]", "10.0.0.1", "172.16.0.1", "192.168.1.1",
    "169.254.169.254", "100.64.0.1", "224.0.0.1", "240.0.0.1", "255.255.255.255", "[fe80::1]", "[fc00::1]",
    "[ff02::1]", "[64:ff9b::a00:1]", "[2002:a00:1::]", "[::ffff:169.254.169.254]",
])
def test_internal_addresses_are_refused_without_a_connection(host, connections, site):
    port = site.base.rsplit(":", 1)[1]
    with pytest.raises(FetchError) as info:
        fetch(f"http://{host}:{port}/news/harbour-bridge-closure.html", FetchSettings(timeout=2))
    assert info.value.problem == "refused", info.value
    assert connections.elsewhere == [] and connections.local == [] and site.hits.total() == 0


@pytest.mark.parametrize("address, allowed", [
    ("::ffff:93.184.216.34", True), ("64:ff9b::5db8:d822", True),  # a public IPv4 host, carried in IPv6
    ("::ffff:10.0.0.1", False), ("64:ff9b::a9fe:a9fe", False),  # 10.0.0.1 and 169.254.169.254, carried
    ("93.184.216.34", True), ("2606:2800:220:1:248:1893:25c8:1946", True),
])
def test_a_mapped_or_nat64_address_is_judged_by_the_ipv4_address_it_carries(address, allowed):
    """No connection: the policy alone. An IPv6-only host reaches public IPv4 sites through NAT64."""
    import ipaddress

    from index.ingest.web import address_allowed

    assert address_allowed(ipaddress.ip_address(address)) is allowed


def test_an_octal_address_is_not_even_a_url(connections, site):
    port = site.base.rsplit(":", 1)[1]  # 0177.0.0.1 is 127.0.0.1 to the C library; httpx refuses the URL
    with pytest.raises(FetchError) as info:
        fetch(f"http://0177.0.0.1:{port}/", FetchSettings(timeout=2))
    assert info.value.problem in ("bad_url", "refused") and connections.local == [] and site.hits.total() == 0


@pytest.mark.parametrize("answer", [
    "10.0.0.1", "172.31.255.254", "192.168.0.10", "169.254.169.254", "127.0.0.1", "127.53.0.1", "::1",
    "fe80::1", "fd12:3456::1", "224.0.0.251", "ff02::fb", "240.0.0.1", "0.0.0.0", "::", "::ffff:10.0.0.1",
    "100.64.0.1", "198.18.0.1",
])
def test_a_public_looking_name_resolving_inside_is_refused(answer, connections):
    with pytest.raises(FetchError) as info:
        fetch("http://news.example.com/a.html", FetchSettings(timeout=2), resolver=stub(answer))
    assert info.value.problem == "refused"
    assert connections.elsewhere == [] and connections.local == []


def test_one_internal_answer_among_public_ones_is_enough_to_refuse(connections):
    with pytest.raises(FetchError) as info:
        fetch("https://news.example.com/a", FetchSettings(timeout=2), resolver=stub("93.184.216.34", "10.0.0.1"))
    assert info.value.problem == "refused" and connections.elsewhere == []


def test_a_public_name_connects_to_the_address_that_was_checked(connections):
    calls: list[str] = []
    with pytest.raises(FetchError) as info:  # the recorder refuses the connection: nothing leaves 127.0.0.1
        fetch("http://news.example.com/a.html", FetchSettings(timeout=2), resolver=stub("93.184.216.34", calls=calls))
    assert connections.elsewhere == [("93.184.216.34", 80)]  # the checked address, not the name again
    assert calls == ["news.example.com"]  # one lookup: no second answer can rebind it
    assert info.value.problem == "unreachable"
    assert "Error" not in str(info.value) and "Refused" not in str(info.value)  # no exception class names


def test_the_checked_address_is_used_and_the_name_is_still_the_host(site, connections):
    port = site.base.rsplit(":", 1)[1]
    page = fetch(f"http://news.invalid:{port}/news/ferry-strike.html", LOCAL, resolver=stub("127.0.0.1"))
    assert page.status == 200 and b"ferry" in page.body.lower()
    assert connections.local and site.last_headers["/news/ferry-strike.html"]["Host"] == f"news.invalid:{port}"


def test_the_allow_list_widens_by_address_and_by_network(site, connections):
    url = site.url("/news/ferry-strike.html")
    assert fetch(url, FetchSettings(allow_private="127.0.0.1")).status == 200
    assert fetch(url, FetchSettings(allow_private="10.0.0.0/8, 127.0.0.0/8")).status == 200
    with pytest.raises(FetchError) as info:
        fetch(url, FetchSettings(allow_private="10.0.0.0/8, 127.0.0.2"))
    assert info.value.problem == "refused"
    assert fetch(url.replace("127.0.0.1", "[::ffff:127.0.0.1]"), LOCAL).status == 200  # the same address
    with pytest.raises(FetchError):
        fetch(url.replace("127.0.0.1", "[::1]"), LOCAL)  # another address: not on the list
    with pytest.raises(FetchError) as info:  # an allowed network: the connection is attempted (and recorded)
        fetch("http://intranet.example/a", FetchSettings(timeout=2, allow_private="10.0.0.0/8"),
              resolver=stub("10.1.2.3"))
    assert info.value.problem == "unreachable" and connections.elsewhere == [("10.1.2.3", 80)]


@pytest.mark.parametrize("value", ["intranet", "10.0.0.0/33", "300.1.1.1"])
def test_a_bad_allow_list_is_refused_at_start(value):
    from bot.settings import SettingsError, load_settings

    with pytest.raises(ValueError):
        FetchSettings(allow_private=value)
    with pytest.raises(SettingsError, match="HERALD_FETCH_ALLOW_PRIVATE"):
        load_settings(env_file=None, environ={"HERALD_FETCH_ALLOW_PRIVATE": value})


# ---------------------------------------------------------------------------------------- redirects


@pytest.mark.parametrize("target", [
    "http://10.0.0.1/secret", "http://169.254.169.254/latest/meta-data/", "http://[::1]/", "http://0.0.0.0:1/",
    "http://127.0.0.2/", "http://2130706434/",
])
def test_a_redirect_to_an_internal_address_is_refused(site, connections, target):
    site.redirect("/go", target)
    with pytest.raises(FetchError) as info:
        fetch(site.url("/go"), LOCAL)
    assert info.value.problem == "refused" and connections.elsewhere == []
    assert len(connections.local) == 1  # the first hop only


def test_a_redirect_to_an_internal_name_is_checked_after_resolving(site, connections):
    site.redirect("/go", "http://metadata.example/computeMetadata/v1/")
    with pytest.raises(FetchError) as info:
        fetch(site.url("/go"), LOCAL, resolver=lambda host, port: ["127.0.0.1"] if host == "127.0.0.1"
              else ["169.254.169.254"])
    assert info.value.problem == "refused" and connections.elsewhere == []


@pytest.mark.parametrize("target", ["file:///etc/passwd", "ftp://127.0.0.1/a", "gopher://127.0.0.1:70/x",
                                    "javascript:alert(1)"])
def test_a_redirect_to_another_scheme_is_refused(site, target):
    site.redirect("/go", target)
    with pytest.raises(FetchError) as info:
        fetch(site.url("/go"), LOCAL)
    assert info.value.problem == "bad_url"


def test_an_allowed_redirect_is_followed_and_a_loop_still_ends(site):
    site.redirect("/go", site.url("/news/ferry-strike.html").replace("127.0.0.1", "[::ffff:127.0.0.1]"))
    assert fetch(site.url("/go"), LOCAL).status == 200
    with pytest.raises(FetchError) as info:
        fetch(site.url("/redirect-loop"), LOCAL)
    assert info.value.problem == "http_status" and "redirects" in info.value.detail


# ----------------------------------------------------------------------------- what a person sees


def test_herald_add_of_an_internal_page_is_one_line_that_does_not_tell_open_from_closed(
        built_index, fake_embedder, invoke, site):
    opts = ["--corpus", str(built_index.corpus), "--index", str(built_index.index), "--model", "test-hash"]
    open_port = invoke("add", *opts, site.url("/news/harbour-bridge-closure.html"))
    closed_port = invoke("add", *opts, "http://127.0.0.1:9/news/harbour-bridge-closure.html")
    for r in (open_port, closed_port):
        assert r.exit_code == 1 and "Traceback" not in r.output, r.output
        assert "private or internal" in r.stdout and len(r.output.strip().splitlines()) == 1, r.output
    port = site.base.rsplit(":", 1)[1]
    assert open_port.stdout.replace(port, "9") == closed_port.stdout
    assert site.hits.total() == 0 and not (built_index.corpus / "web").exists()


@pytest.mark.parametrize("url", ["http://[::1", "http://" + "a" * 70_000 + ".example/", "http://exa mple.com/",
                                 "http://:80/", "http://a.example:99999/", "https://", "http://[fe80::1%25eth0/"])
def test_malformed_urls_are_a_clear_bad_url(tmp_path, url):
    res = add_url(tmp_path, url)
    assert res.status == "failed" and res.error.problem == "bad_url", res.error
    assert len(str(res.error)) < 400  # a 70 KB address is not echoed back whole


def test_herald_add_of_a_malformed_url_is_one_clear_line(built_index, fake_embedder, invoke):
    opts = ["--corpus", str(built_index.corpus), "--index", str(built_index.index), "--model", "test-hash"]
    r = invoke("add", *opts, "http://[::1")
    assert r.exit_code == 1 and "Traceback" not in r.output and "is not a web address" in r.stdout, r.output
    assert len(r.output.strip().splitlines()) == 1, r.output  # the line says why; no summary under it


def test_credentials_in_a_url_are_never_stored_shown_or_logged(built_index, fake_embedder, invoke, site, caplog):
    url = site.url("/news/harbour-bridge-closure.html").replace("http://", "http://editor:hunter2@")
    res = add_url(built_index.corpus, url, LOCAL)
    assert res.status == "failed" and res.error.problem == "bad_url"
    assert "hunter2" not in res.url and "hunter2" not in str(res.error) and "editor" not in res.url
    opts = ["--corpus", str(built_index.corpus), "--index", str(built_index.index), "--model", "test-hash"]
    with caplog.at_level(logging.DEBUG):
        r = invoke("-v", "add", *opts, url, env={"HERALD_FETCH_ALLOW_PRIVATE": "127.0.0.1"})
    assert r.exit_code == 1 and "password" in r.stdout and "hunter2" not in r.output
    assert not any("hunter2" in m.getMessage() for m in caplog.records)
    assert site.hits.total() == 0 and not list(built_index.corpus.rglob("*.md"))


# ------------------------------------------------------------------------------- bomb and trickle


BOMB_SCRIPT = """
import json, resource, sys, tracemalloc
sys.path.insert(0, {tests!r}); sys.path.insert(0, {repo!r})
resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))  # a 1 GiB bomb decoded whole cannot fit twice
from index import FetchError, FetchSettings
from index.ingest.web import fetch
tracemalloc.start()
try:
    fetch({url!r}, FetchSettings(allow_private="127.0.0.1", timeout=10))
    problem = None
except FetchError as exc:
    problem = exc.problem
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the forking parent (pytest, with models loaded)
# across exec, while VmHWM is this process's own peak.
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({{"problem": problem, "peak": tracemalloc.get_traced_memory()[1], "maxrss_kb": hwm}}))
"""


def test_a_gzip_gzip_bomb_ends_quickly_with_bounded_memory(site):
    from fakes.news import bomb_body

    assert len(bomb_body()) < 2000  # about 1.8 KB on the wire, 1 GiB decoded
    script = BOMB_SCRIPT.format(tests=str(REPO / "tests"), repo=str(REPO), url=site.url("/bomb.html"))
    started = time.monotonic()
    run = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True, timeout=60)
    elapsed = time.monotonic() - started
    assert run.returncode == 0, run.stderr[-2000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["problem"] == "too_large"
    assert out["peak"] < 60_000_000, out  # Python allocations during the fetch: the 5 MB cap plus buffers
    assert out["maxrss_kb"] < 400_000, out  # the whole process, imports included
    assert elapsed < 30


def _gzip(data: bytes, times: int) -> bytes:
    import gzip

    for _ in range(times):
        data = gzip.compress(data)
    return data


PAGE = b"<html><head><title>T</title></head><body><p>" + b"Words. " * 200 + b"</p></body></html>"


@pytest.mark.parametrize("encoding, body, detail", [
    ("gzip, gzip, gzip", _gzip(PAGE, 3), "gzip, gzip, gzip"),  # more stacked codings than Herald decodes
    ("br", PAGE, "br"),  # a coding Herald did not ask for and does not decode
    ("gzip", b"this is not gzip at all", "corrupt compressed data"),
])
def test_stacked_unknown_or_corrupt_encodings_are_refused(site, encoding, body, detail):
    site.serve("/enc.html", body=body, content_type="text/html", headers={"Content-Encoding": encoding})
    with pytest.raises(FetchError) as info:
        fetch(site.url("/enc.html"), LOCAL)
    assert info.value.problem == "bad_encoding" and detail in info.value.detail, info.value


def test_two_stacked_gzip_encodings_are_decoded(site):
    site.serve("/enc2.html", body=_gzip(PAGE, 2), content_type="text/html",
               headers={"Content-Encoding": "gzip, gzip"})
    assert fetch(site.url("/enc2.html"), LOCAL).body == PAGE


def test_a_trickling_server_is_stopped_by_the_deadline(site):
    import tracemalloc

    site.trickle_seconds = 0.5  # each byte well within the per-read timeout
    started = time.monotonic()
    tracemalloc.start()
    with pytest.raises(FetchError) as info:
        fetch(site.url("/trickle.html"), FetchSettings(timeout=5, deadline=2, allow_private="127.0.0.1"))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert time.monotonic() - started < 10
    assert peak < 20_000_000, f"{peak:,} bytes held while a server trickled"
    assert info.value.problem == "timeout" and "2 s" in info.value.detail


def test_the_deadline_is_a_setting(isolated_settings):
    from bot.settings import load_settings

    s = load_settings(env_file=None, environ={"HERALD_FETCH_DEADLINE": "12", "HERALD_FEED_MAX_ITEMS": "7"})
    assert s.fetch.deadline == 12 and s.feed_max_items == 7
    assert load_settings(env_file=None, environ={}).fetch.deadline == 30


# ---------------------------------------------------------------------------- what add says it did


def test_an_article_over_the_index_limit_is_not_said_to_be_added(tmp_path):
    sentence = "The harbour council met again on Tuesday to discuss the bridge repairs. "
    big = Article(url="http://news.example/a", title="Long", text=sentence * (MAX_ARTICLE_BYTES // len(sentence) + 10))
    with pytest.raises(FetchError) as info:
        save_article(tmp_path, big)
    assert info.value.problem == "too_large" and not list(tmp_path.rglob("*.md"))
    fits = Article(url="http://news.example/b", title="Fits", text=sentence * (MAX_ARTICLE_BYTES // len(sentence) - 10))
    res = save_article(tmp_path, fits)
    assert res.status == "added" and res.path.stat().st_size <= MAX_ARTICLE_BYTES


def test_wire_copy_in_one_sentence_paragraphs_is_an_article():
    paras = ["The port authority said on Monday that the harbour bridge would reopen to traffic next week.",
             "Engineers found cracks in two of the bridge's supports during a routine inspection last month.",
             "Repairs cost 14.2 million euros, the authority said, and were paid for by the regional government.",
             "Ferry services added during the closure will run until Friday, the operator said in a statement.",
             "Local businesses said the closure had cut the number of visitors to the old town by a third."]
    html = ("<html><head><title>Harbour bridge to reopen</title></head><body><article><h1>Harbour bridge to "
            "reopen</h1>" + "".join(f"<p>{p}</p>" for p in paras) + "</article></body></html>")
    art = extract(html, "http://news.example/bridge")
    assert "Repairs cost 14.2 million euros" in art.text


# -------------------------------------------------------------------------------------------- feeds


def rss(*links: str) -> str:
    items = "".join(f"<item><title>Item {i}</title><link>{link}</link></item>" for i, link in enumerate(links))
    return f'<?xml version="1.0"?><rss version="2.0"><channel><title>T</title>{items}</channel></rss>'


def test_a_poll_uses_one_http_client(tmp_path, site, monkeypatch):
    import httpx

    made = []
    real_init = httpx.Client.__init__
    monkeypatch.setattr(httpx.Client, "__init__", lambda self, *a, **k: (made.append(1), real_init(self, *a, **k))[1])
    site.serve("/many.xml", body=rss(*[f"/news/missing-{i}.html" for i in range(8)],
                                     "/news/ferry-strike.html", "/news/harbour-bridge-closure.html"))
    res = poll_feed(tmp_path, site.url("/many.xml"), FeedStates(tmp_path / "feeds.json"), LOCAL)
    assert res.error is None and len(res.items) == 10
    assert sum(i.status == "added" for i in res.items) == 2
    assert len(made) == 1


def test_relative_item_links_are_resolved_against_the_feed(tmp_path, site):
    site.serve("/rel/feed.xml", body=rss("/news/ferry-strike.html", "../news/harbour-bridge-closure.html"))
    res = poll_feed(tmp_path, site.url("/rel/feed.xml"), FeedStates(tmp_path / "feeds.json"), LOCAL)
    assert [i.status for i in res.items] == ["added", "added"], [str(i.error) for i in res.items]
    assert {i.url for i in res.items} == {site.url("/news/ferry-strike.html"),
                                         site.url("/news/harbour-bridge-closure.html")}


def test_a_poll_fetches_at_most_max_items_and_the_rest_come_later(tmp_path, site):
    links = [f"/news/gone-{i}.html" for i in range(25)]
    site.serve("/big.xml", body=rss(*links))
    states = FeedStates(tmp_path / "feeds.json")
    fetched = []
    for _ in range(4):
        res = poll_feed(tmp_path, site.url("/big.xml"), states, LOCAL, max_items=10)
        fetched.append(len(res.items))
    assert fetched == [10, 10, 5, 0]
    assert all(site.hits[p] == 1 for p in links)  # a 404 is not worth a retry: each asked once


def test_failed_items_back_off_give_up_and_never_block_the_etag(tmp_path, site):
    site.serve("/f.xml", body=rss("/news/ferry-strike.html", "/error.html"))
    states, url, clock = FeedStates(tmp_path / "feeds.json"), site.url("/f.xml"), [1_000_000.0]

    def poll():
        return poll_feed(tmp_path, url, states, LOCAL, now=lambda: clock[0])

    first = poll()
    assert {i.url: i.status for i in first.items} == {site.url("/news/ferry-strike.html"): "added",
                                                      site.url("/error.html"): "failed"}
    assert states.get(url).etag  # saved although an item failed
    clock[0] += 1
    again = poll()
    assert again.unchanged and site.hits["/error.html"] == 1  # a 304, and no retry yet
    attempts = 1
    while attempts < RETRY_LIMIT:
        clock[0] += RETRY_AFTER * 2 ** (attempts - 1) + 1
        res = poll()
        attempts += 1
        assert site.hits["/error.html"] == attempts and res.unchanged
    clock[0] += RETRY_AFTER * 2 ** RETRY_LIMIT
    poll()
    assert site.hits["/error.html"] == RETRY_LIMIT  # given up
    assert site.hits["/news/ferry-strike.html"] == 1
    reread = FeedStates(tmp_path / "feeds.json").get(url)
    assert site.url("/error.html") in reread.seen and not reread.failed


def test_a_hand_edited_state_file_loses_only_its_bad_entries(tmp_path, caplog):
    path = tmp_path / "feeds.json"
    good = {"etag": '"abc"', "last_modified": None, "seen": ["http://a.example/1"], "checked_at": None}
    path.write_text(json.dumps({"http://good.example/feed": good, "http://bad.example/feed": {"seen": "oops"},
                                "http://worse.example/feed": 42, "http://odd.example/feed": {"etag": 5, "x": 1}}))
    with caplog.at_level(logging.WARNING):
        states = FeedStates(path)
    assert set(states.states) == {"http://good.example/feed"}
    assert states.get("http://good.example/feed").seen == ["http://a.example/1"]
    assert len([r for r in caplog.records if "feed state" in r.getMessage()]) == 3
    for text in (b"[1, 2]", b"{not json", b"\xff\xfe\x00garbage", b'{"http://x.example/f": {"seen": [1, null]}}'):
        path.write_bytes(text)
        states = FeedStates(path)  # a warning, never a traceback
        assert all(isinstance(s, str) for st in states.states.values() for s in st.seen)


def test_the_feed_state_lives_beside_the_index(built_index, fake_embedder, invoke, site, isolated_settings):
    opts = ["--corpus", str(built_index.corpus), "--index", str(built_index.index), "--model", "test-hash"]
    r = invoke("add", "--feed", *opts, site.url("/feed.xml"), env={"HERALD_FETCH_ALLOW_PRIVATE": "127.0.0.1"})
    assert r.exit_code == 0, r.output
    assert (built_index.index.parent / "feeds.json").is_file()
    assert not (isolated_settings / ".herald" / "feeds.json").exists()


def test_a_feed_item_pointing_inside_is_refused_with_nobody_involved(tmp_path, site, connections):
    site.serve("/evil.xml", body=rss("http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/admin"))
    res = poll_feed(tmp_path, site.url("/evil.xml"), FeedStates(tmp_path / "feeds.json"), LOCAL)
    assert [i.error.problem for i in res.items] == ["refused", "refused"]
    assert connections.elsewhere == []
