"""What the benchmark scripts share: the data sets, how an answer is scored, percentiles, Markdown tables.

One copy of each, so that two benchmarks never disagree on what "a hit" or "p50" means. Data sets:
SQuAD v2.0 dev (its first 16 articles, outside the repository, by path), BBC News (distractors, by path)
and the repository's own article question set (``tests/data/article_qa.jsonl`` over ``corpus/``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from index.ingest.corpus import clean_text

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "corpus"
ARTICLE_QA = ROOT / "tests" / "data" / "article_qa.jsonl"
SQUAD = ROOT.parent / "shared/data/squad-dev-v2.0-half.json"  # where the measured runs found it
SQUAD_IN_CORPUS = 8  # the first 8 articles are indexed for the abstention split; the other 8 ask


# ------------------------------------------------------------------------------------------ data sets


@dataclass
class Question:
    text: str
    answers: list[str]
    doc_id: str = ""
    # (start, end) of each gold answer in the *raw* paragraph, plus the paragraph index in its article
    spans: list[tuple[int, int]] = field(default_factory=list)
    paragraph: int = -1
    gold_spans: list[tuple[int, int]] = field(default_factory=list)  # in the cleaned document text


def write_if_changed(path: Path, text: str) -> None:
    """Leave an unchanged file alone, so an incremental build sees nothing new."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")


def squad_articles(path: Path) -> list[dict]:
    return json.loads(Path(path).read_text(encoding="utf-8"))["data"]


def squad_doc_id(i: int, article: dict) -> str:
    return f"squad/{i:02d}-{re.sub(r'[^A-Za-z0-9_-]+', '_', article['title'])}.txt"


def write_squad(articles: list[dict], corpus: Path, which: range) -> None:
    """One document per article: the title line, then its paragraphs separated by blank lines."""
    keep = set()
    for i in which:
        art = articles[i]
        doc_id = squad_doc_id(i, art)
        keep.add(doc_id)
        body = "\n\n".join(" ".join(p["context"].split()) for p in art["paragraphs"])
        write_if_changed(corpus / doc_id, art["title"].replace("_", " ") + "\n\n" + body + "\n")
    for old in (corpus / "squad").glob("*.txt") if (corpus / "squad").exists() else []:
        if f"squad/{old.name}" not in keep:
            old.unlink()


def squad_questions(articles: list[dict], which: range) -> list[Question]:
    out = []
    for i in which:
        art = articles[i]
        for pi, para in enumerate(art["paragraphs"]):
            for qa in para["qas"]:
                if qa.get("is_impossible") or not qa["answers"]:
                    continue
                spans = [(a["answer_start"], a["answer_start"] + len(a["text"])) for a in qa["answers"]]
                # answer_start indexes the raw context; our document folds its white space
                texts = sorted({a["text"] for a in qa["answers"]})
                out.append(Question(qa["question"], texts, squad_doc_id(i, art), spans, pi))
    return out


def link_bbc(bbc: Path, corpus: Path, every: int = 1) -> int:
    """Copy the BBC articles in as distractors (bbc/<category>/NNN.txt), bytes unchanged.

    ``every`` > 1 takes every Nth article of each category (a sample for a slow model's build)."""
    n = 0
    for src in [f for cat in sorted(Path(bbc).iterdir()) if cat.is_dir()
                for f in sorted(cat.glob("*.txt"))[::max(1, every)]]:
        dst = corpus / "bbc" / src.parent.name / src.name
        raw = src.read_bytes()
        if not dst.exists() or dst.read_bytes() != raw:
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(raw)
        n += 1
    return n


def _paragraph_starts(index: Any, articles: list[dict]) -> dict[tuple[str, int], tuple[int, str, str]]:
    """(doc id, paragraph) -> (offset in the cleaned document, cleaned paragraph, raw paragraph)."""
    starts: dict[tuple[str, int], tuple[int, str, str]] = {}
    for i, art in enumerate(articles):
        doc_id = squad_doc_id(i, art)
        doc = index.doc_by_id.get(doc_id)
        if doc is None:
            continue
        cursor = 0
        for pi, para in enumerate(art["paragraphs"]):
            cleaned = clean_text(" ".join(para["context"].split()))
            at = doc.text.find(cleaned, cursor)
            if at < 0:
                continue
            starts[(doc_id, pi)] = (at, cleaned, para["context"])
            cursor = at + len(cleaned)
    return starts


def _map_spans(q: Question, at: int, cleaned: str, raw: str) -> None:
    for (a, b) in q.spans:
        ans = raw[a:b]
        if cleaned == raw:
            q.gold_spans.append((at + a, at + b))
            continue
        # white space or punctuation was folded: take the same occurrence of the answer text
        ans_clean = " ".join(ans.split())
        nth = raw.count(ans, 0, a)
        pos = -1
        for _ in range(nth + 1):
            pos = cleaned.find(ans_clean, pos + 1)
            if pos < 0:
                break
        if pos >= 0:
            q.gold_spans.append((at + pos, at + pos + len(ans_clean)))


def map_gold(index: Any, articles: list[dict], questions: list[Question]) -> int:
    """Map raw paragraph answer offsets into the cleaned document text; returns how many failed."""
    para_starts = _paragraph_starts(index, articles)
    failed = 0
    for q in questions:
        got = para_starts.get((q.doc_id, q.paragraph))
        if got is None:
            failed += 1
            continue
        _map_spans(q, *got)
        if not q.gold_spans:
            failed += 1
    return failed


def article_questions(path: Path = ARTICLE_QA) -> list[Question]:
    """The article question set as Questions (no answers: an off-topic question)."""
    out = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            obj = json.loads(line)
            out.append(Question(obj["question"], list(obj.get("answers", []))))
    return out


def question_texts(path: Path = ARTICLE_QA) -> list[str]:
    """Only the questions of a JSONL question set, in order (for timing, where answers do not matter)."""
    return [json.loads(line)["question"] for line in Path(path).read_text(encoding="utf-8").splitlines()
            if line.strip()]


# -------------------------------------------------------------------------------------------- scoring


def normalise(text: str) -> str:
    return " ".join(text.split()).casefold()


def contains_answer(text: str, answers: list[str]) -> bool:
    """A gold answer string is in ``text`` (white space and case folded): an answer hit."""
    low = normalise(text)
    return any(normalise(a) in low for a in answers)


def is_gold(engine: Any, row: int, q: Question) -> bool:
    """The chunk at ``row`` holds a gold answer's span (SQuAD) or an expected string (the article set)."""
    chunk = engine.index.chunks[row]
    if q.gold_spans:
        return chunk.doc_id == q.doc_id and any(chunk.start <= a and b <= chunk.end for a, b in q.gold_spans)
    return contains_answer(chunk.text, q.answers)  # the article set: an expected string in the chunk


def source_is_gold(engine: Any, source: Any, q: Question) -> bool:
    """is_gold for one of an Answer's sources: a source names its chunk by id, and in an index that was
    updated rather than built from scratch (squad-all + BBC starts as a copy of squad-all) ids are not rows."""
    return is_gold(engine, engine.index.row_of_id[source.chunk_id], q)


def percentile(values: Iterable[float], q: float) -> float:
    """The q-th percentile (0-100, linear interpolation); NaN for no values."""
    arr = np.asarray(list(values), dtype=float)
    return float(np.percentile(arr, q)) if arr.size else float("nan")


@dataclass
class Row:
    """One system's figures on one data set, as benchmarks/quality.py reports them."""

    name: str
    rank_hits: list[int] = field(default_factory=list)  # 1-based rank of the first gold chunk, 0 = none in top 5
    answer_hits: list[bool] = field(default_factory=list)
    latency_ms: list[float] = field(default_factory=list)
    in_scores: list[float] = field(default_factory=list)
    out_scores: list[float] = field(default_factory=list)
    phrase: list[int] = field(default_factory=lambda: [0, 0, 0])  # who/when/how-many questions: asked, marked, right

    def recall(self, k: int) -> float:
        return float(np.mean([0 < r <= k for r in self.rank_hits])) if self.rank_hits else float("nan")

    def answer_hit(self) -> float:
        return float(np.mean(self.answer_hits)) if self.answer_hits else float("nan")

    def p50(self) -> float:
        return percentile(self.latency_ms, 50)

    def abstention(self, false_rate: float = 0.05) -> tuple[float, float]:
        """(share of out-of-corpus questions abstained, threshold) when ``false_rate`` of in-corpus ones are."""
        if not self.in_scores or not self.out_scores:
            return float("nan"), float("nan")
        t = float(np.quantile(np.asarray(self.in_scores), false_rate))
        return float(np.mean(np.asarray(self.out_scores) < t)), t

    def curve(self) -> tuple[np.ndarray, np.ndarray]:
        """(false abstention on in-corpus, abstention on out-of-corpus) over every threshold."""
        ins, outs = np.sort(self.in_scores), np.asarray(self.out_scores)
        ts = np.unique(np.concatenate([ins, outs]))
        fa = np.searchsorted(ins, ts, side="left") / len(ins)
        ab = np.array([(outs < t).mean() for t in ts])
        return fa, ab


ROW_COLUMNS = ["recall@1", "recall@5", "answer hit", "abstain out-of-corpus @5% false", "p50 ms"]


def row_cells(r: Row) -> list[str]:
    """One Row's figures as Markdown cells, in ROW_COLUMNS order."""
    ab, _ = r.abstention()
    return [f"{r.recall(1):.3f}", f"{r.recall(5):.3f}", f"{r.answer_hit():.3f}", f"{ab:.3f}", f"{r.p50():.1f}"]


# --------------------------------------------------------------------------------------------- tables


def md_row(cells: Iterable[object]) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def md_table(head: Sequence[str], rows: Iterable[Iterable[object]], align: str = "", tight: bool = False) -> str:
    """A Markdown table. ``align`` has one letter per column, "l" or "r" (default: the first column left,
    the rest right); ``tight`` writes the rule without spaces (``|---|---:|``), as some reports always have."""
    align = align or "l" + "r" * (len(head) - 1)
    marks = ["---:" if a == "r" else "---" for a in align]
    rule = "|" + "|".join(marks) + "|" if tight else md_row(marks)
    return "\n".join([md_row(head), rule, *(md_row(r) for r in rows)])
