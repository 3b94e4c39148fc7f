"""Issue 12's article targets (answer hit >= 0.75, expected string in the top 3 sources >= 0.95), per model.

For each model and each set of search values, the figures `herald eval` prints for the article question
set (index.evaluate: recall@3 is an expected string in the first three sources), plus the answer hit if
Herald never abstained (both thresholds 0), which is the most any abstention setting could give. One row
per (model, values); the article index is built from scratch in a temporary folder for each model.

    OMP_NUM_THREADS=1 taskset -c 1 .venv/bin/python -m benchmarks.article_targets \\
        --model all-MiniLM-L6-v2 --model multilingual-e5-small-q4 \\
        --model /tmp/ft/minilm-squad-odd --model /tmp/ft/minilm-squad-all

A model is a registered name or a sentence-transformers folder (benchmarks/finetune.py writes them).
"Values" are the ones Herald ships for the model (index.search_for) and, where they differ, MiniLM's
defaults (SearchSettings()). Not part of `make test`; docs/models.md has the results.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import tempfile
from pathlib import Path

from index import EngineConfig, SearchSettings, evaluate, load_qa, open_engine, search_for

from .common import ARTICLE_QA, CORPUS, md_row, md_table

TARGET_HIT, TARGET_TOP3 = 0.75, 0.95


def rows_for(model: str, corpus: Path, questions: Path) -> list[list[str]]:
    items = load_qa(questions)
    value_sets = {"shipped": search_for(model)}
    if search_for(model) != SearchSettings():
        value_sets["MiniLM's defaults"] = SearchSettings()
    out = []
    with tempfile.TemporaryDirectory(prefix="herald-targets-") as tmp:
        shutil.copytree(corpus, Path(tmp) / "corpus")
        for label, values in value_sets.items():
            config = EngineConfig(corpus=Path(tmp) / "corpus", index_dir=Path(tmp) / "index", model=model,
                                  search=values)
            s = evaluate(open_engine(config), items).summary()
            never = dataclasses.replace(values, abstain_threshold=0.0, tentative_below=0.0)
            n = evaluate(open_engine(dataclasses.replace(config, search=never)), items).summary()
            out.append([Path(model).name if "/" in model else model, label, f"{s['answer_hit']:.3f}",
                        f"{n['answer_hit']:.3f}", f"{s['recall@1']:.3f}", f"{s['recall@3']:.3f}",
                        f"{s['recall@5']:.3f}", f"{s['answerable'] - s['answered']} / {s['answerable']}",
                        f"{s['off_topic'] - s['off_topic_answered']} / {s['off_topic']}"])
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", action="append", required=True, help="repeat for each model")
    ap.add_argument("--corpus", type=Path, default=CORPUS)
    ap.add_argument("--questions", type=Path, default=ARTICLE_QA)
    args = ap.parse_args(argv)
    print(md_table(["model", "values", "answer hit", "answer hit, never abstaining", "recall@1", "recall@3",
                    "recall@5", "answerable abstained", "off-topic abstained"], [], align="ll" + "r" * 7))
    for model in args.model:
        for row in rows_for(model, args.corpus, args.questions):
            print(md_row(row), flush=True)
    print(f"\nTargets: answer hit >= {TARGET_HIT}, recall@3 >= {TARGET_TOP3}.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
