"""The NumPy BERT path (index.bert_numpy) gives sentence-transformers' vectors, and is used only where it can.

These use the real packaged model, offline.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import raises_said
from index.embed import bert_numpy
from index.embed import models as embed
from index.embed.models import DEFAULT_MODEL, BertEmbedder, SentenceTransformerEmbedder, resolve_model_path
from index.errors import HeraldError

pytestmark = pytest.mark.model

REPO = Path(__file__).resolve().parents[1]
TEXTS = [
    "who vetoed the resolution?",
    "   Why can't the ICC act on Syria?   ",
    "",
    "Le veto russe au conseil de sécurité des Nations unies est un cadeau aux terroristes",
    "Hospital in #Aleppo#Syria in 2 words: Bloody. Hell. — bint AbuBakr (@itsmenanice) October 6, 2016",
    "日本語のテキストと emoji 🙂 mixed in",
    "word " * 400,  # longer than the model's 256-token limit: both must truncate the same way
]


@pytest.fixture(scope="module")
def folder() -> str:
    return resolve_model_path(DEFAULT_MODEL)


@pytest.fixture(scope="module")
def reference(folder) -> np.ndarray:
    corpus = (REPO / "corpus/euronews-frosty-franco-russian-relations.txt").read_text(encoding="utf-8")
    texts = TEXTS + [p for p in corpus.split("\n\n") if p.strip()][:20]
    return texts, SentenceTransformerEmbedder(DEFAULT_MODEL).encode(texts)


def test_numpy_vectors_match_sentence_transformers(folder, reference):
    texts, expected = reference
    got = bert_numpy.NumpyBertEmbedder(DEFAULT_MODEL, folder).encode(texts, batch_size=8)
    assert got.shape == expected.shape and got.dtype == np.float32
    assert np.abs(got - expected).max() < 1e-5
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_torch_bulk_vectors_match_sentence_transformers(folder, reference):
    """The bulk path runs the NumPy model's weights on torch; both must give sentence-transformers' vectors."""
    texts, expected = reference
    got = bert_numpy.TorchBertEmbedder(bert_numpy.NumpyBertEmbedder(DEFAULT_MODEL, folder)).encode(texts, batch_size=8)
    assert got.shape == expected.shape and got.dtype == np.float32
    assert np.abs(got - expected).max() < 1e-5


def test_order_and_batching_do_not_change_a_vector(folder):
    emb = bert_numpy.NumpyBertEmbedder(DEFAULT_MODEL, folder)
    alone = emb.encode([TEXTS[0]])[0]
    mixed = emb.encode(TEXTS[::-1], batch_size=3)
    assert np.abs(mixed[len(TEXTS) - 1] - alone).max() < 1e-5


def test_default_model_takes_the_numpy_path_for_small_calls_and_bulk_for_large(folder, monkeypatch):
    emb = BertEmbedder(DEFAULT_MODEL, folder)
    emb.encode(TEXTS[:2])
    assert emb._bulk is None  # a question never loads torch
    monkeypatch.setattr(BertEmbedder, "numpy_tokens", 5)
    bulk = emb.encode(TEXTS[:2])
    assert isinstance(emb._bulk, bert_numpy.TorchBertEmbedder)  # the same weights on torch, not transformers
    assert np.abs(bulk - emb._numpy.encode(TEXTS[:2])).max() < 1e-5


def test_get_embedder_picks_the_numpy_path_for_the_packaged_model(monkeypatch):
    monkeypatch.setattr(embed, "_CACHE", {})
    assert isinstance(embed.get_embedder(DEFAULT_MODEL), BertEmbedder)


def _copy_model(folder: str, dst: Path) -> Path:
    shutil.copytree(folder, dst, ignore=shutil.ignore_patterns("model.safetensors"))
    (dst / "model.safetensors").symlink_to(Path(folder) / "model.safetensors")
    return dst


@pytest.mark.parametrize("change", [
    ("config.json", {"model_type": "roberta"}),
    ("config.json", {"hidden_act": "relu"}),
    ("1_Pooling/config.json", {"pooling_mode_mean_tokens": False, "pooling_mode_max_tokens": True}),
    ("sentence_bert_config.json", {"model_args": {"trust_remote_code": True}}),
])
def test_models_it_cannot_reproduce_go_through_sentence_transformers(folder, tmp_path, change):
    model = _copy_model(folder, tmp_path / "model")
    assert bert_numpy.supports(model)
    name, patch = change
    cfg = json.loads((model / name).read_text())
    cfg.update(patch)
    (model / name).write_text(json.dumps(cfg))
    assert not bert_numpy.supports(model)


def test_extra_modules_are_not_reproduced(folder, tmp_path):
    model = _copy_model(folder, tmp_path / "model")
    modules = json.loads((model / "modules.json").read_text())
    modules.append({"idx": 3, "name": "3", "path": "3_Dense", "type": "sentence_transformers.models.Dense"})
    (model / "modules.json").write_text(json.dumps(modules))
    assert not bert_numpy.supports(model)
    assert not bert_numpy.supports(tmp_path / "missing")


def test_corrupt_weights_give_a_clear_error(folder, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(folder, model, ignore=shutil.ignore_patterns("model.safetensors"))
    (model / "model.safetensors").write_bytes(b"not a safetensors file")
    assert bert_numpy.supports(model)  # looks right on disk...
    with raises_said(HeraldError, "cannot load embedding model .*Reinstall"):
        BertEmbedder("broken", str(model))  # ...and fails with a message, not a traceback


def test_concurrent_questions_get_the_same_vectors(folder):
    # The bot answers in worker threads with one shared embedder: NumPy work must not interfere.
    from concurrent.futures import ThreadPoolExecutor

    emb = bert_numpy.NumpyBertEmbedder(DEFAULT_MODEL, folder)
    serial = [emb.encode([t])[0] for t in TEXTS]
    with ThreadPoolExecutor(max_workers=4) as pool:
        parallel = list(pool.map(lambda i: emb.encode([TEXTS[i % len(TEXTS)]])[0], range(4 * len(TEXTS))))
    assert all(np.abs(v - serial[i % len(TEXTS)]).max() < 1e-6 for i, v in enumerate(parallel))
