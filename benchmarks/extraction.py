"""Which cleaning to use for HTML pages: trafilatura (as `herald add` uses) or Herald's hand-written cleaning.

For each saved page (default: tests/data/news/*.html, real page structure: navigation, scripts, share
widgets, cookie banners, related-article lists, comments), the gold article is the text of the <p>
elements inside <article> (less the byline: both keep the author apart); page furniture is the text of
<nav>, <header>, <footer>, <aside>, <form> and elements whose class or id says cookie, share, related,
newsletter or comment. For each cleaner: recall = share of gold paragraphs found in its output; leak =
share of furniture blocks found in it.

    .venv/bin/python -m benchmarks.extraction
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from .common import ROOT, md_row, md_table

_FURNITURE = re.compile(r"cookie|consent|share|social|related|newsletter|signup|comment|promo|subscribe", re.I)


def norm(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def gold_and_furniture(html: str) -> tuple[list[str], list[str]]:
    from lxml import html as lh

    tree = lh.fromstring(html)
    gold = [norm(p.text_content()) for p in tree.xpath("//article//p") if len(norm(p.text_content())) > 40]
    gold = [g for g in gold if not (g.startswith("by ") and len(g) < 80)]  # a byline is metadata, not text
    furniture_nodes = tree.xpath("//nav|//header|//footer|//aside|//form") + [
        e for e in tree.iter()
        if isinstance(e.tag, str) and _FURNITURE.search(f"{e.get('class', '')} {e.get('id', '')}")]
    furniture = []
    for node in furniture_nodes:
        t = norm(node.text_content())
        if len(t) > 15 and not any(t in g or g in t for g in gold):
            furniture.append(t)
    return gold, list(dict.fromkeys(furniture))


def hand_written(html: str) -> str:
    from index.ingest.corpus import clean_text, html_to_text

    body, title, _ = html_to_text(html)
    return clean_text(body, title)


def extractor(html: str) -> str:
    from index.ingest.web import FetchError, extract

    try:
        return extract(html, "http://127.0.0.1/page").text
    except FetchError:
        return ""


def score(output: str, gold: list[str], furniture: list[str]) -> tuple[float, float]:
    out = norm(output)
    recall = sum(1 for g in gold if g in out) / len(gold) if gold else float("nan")
    leak = sum(1 for f in furniture if f in out) / len(furniture) if furniture else 0.0
    return recall, leak


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("pages", nargs="*", type=Path, help="HTML files (default: tests/data/news/*.html)")
    args = ap.parse_args()
    pages = args.pages or sorted((ROOT / "tests" / "data" / "news").glob("*.html"))
    print(md_table(["page", "gold paragraphs", "furniture blocks", "hand-written recall / leak",
                    "trafilatura recall / leak"], [], tight=True))
    totals = {"hand": [0.0, 0.0, 0], "traf": [0.0, 0.0, 0]}
    for page in pages:
        html = page.read_text(encoding="utf-8")
        gold, furniture = gold_and_furniture(html)
        if not gold:
            continue  # not an article page (a section front)
        h = score(hand_written(html), gold, furniture)
        t = score(extractor(html), gold, furniture)
        for key, (r, lk) in (("hand", h), ("traf", t)):
            totals[key][0] += r
            totals[key][1] += lk
            totals[key][2] += 1
        print(md_row([page.name, len(gold), len(furniture), f"{h[0]:.2f} / {h[1]:.2f}", f"{t[0]:.2f} / {t[1]:.2f}"]))
    n = totals["hand"][2] or 1
    print(f"| mean of {n} pages | | | {totals['hand'][0] / n:.2f} / {totals['hand'][1] / n:.2f} | "
          f"{totals['traf'][0] / n:.2f} / {totals['traf'][1] / n:.2f} |")
    print()
    print("Command: `.venv/bin/python -m benchmarks.extraction`")


if __name__ == "__main__":
    main()
