"""A sentence-transformers BERT model (all-MiniLM-L6-v2 and kin) run with NumPy: same vectors, no torch import.

Why: importing sentence-transformers (torch, transformers, scikit-learn) costs about 7 s of every cold
`herald ask`, while embedding one question is milliseconds of matrix products. A BERT encoder is small
enough to run from its safetensors weights with NumPy, and the Rust ``tokenizers`` library (already
installed with transformers) tokenises exactly as sentence-transformers does. ``supports()`` accepts only
folders this module reproduces (a BERT ``Transformer`` module, mean or CLS pooling, optional
``Normalize``); anything else goes through sentence-transformers. tests/test_embed.py checks the vectors
against sentence-transformers'.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

_SUPPORTED_MODULES = ("sentence_transformers.models.Transformer", "sentence_transformers.models.Pooling",
                      "sentence_transformers.models.Normalize")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def supports(folder: str | Path) -> bool:
    """True when ``folder`` is a sentence-transformers BERT model this module computes exactly."""
    root = Path(folder)
    modules = _read_json(root / "modules.json")
    config = _read_json(root / "config.json")
    if not isinstance(modules, list) or not isinstance(config, dict):
        return False
    types = [m.get("type", "") for m in modules]
    if not types or types[0] != _SUPPORTED_MODULES[0] or any(t not in _SUPPORTED_MODULES for t in types):
        return False
    if types.count(_SUPPORTED_MODULES[1]) != 1 or modules[0].get("path", "") not in ("", "."):
        return False
    if _pooling_of(root, modules) is None:
        return False
    st_cfg = _read_json(root / "sentence_bert_config.json") or {}
    if not isinstance(st_cfg, dict) or set(st_cfg) - {"max_seq_length", "do_lower_case"}:
        return False  # tokenizer or model arguments we would not apply
    return (config.get("model_type") == "bert" and config.get("hidden_act") == "gelu"
            and config.get("position_embedding_type", "absolute") == "absolute"
            and (root / "model.safetensors").is_file() and (root / "tokenizer.json").is_file())


def _pooling_of(root: Path, modules: list) -> str | None:
    """The pooling (mean or cls) of the folder's Pooling module; None for any other kind."""
    folder = next(m.get("path", "") for m in modules if m.get("type") == _SUPPORTED_MODULES[1])
    cfg = _read_json(root / folder / "config.json")
    return _pooling_mode(cfg) if isinstance(cfg, dict) else None


def _pooling_mode(cfg: dict) -> str | None:
    modes = [k for k in ("pooling_mode_cls_token", "pooling_mode_mean_tokens", "pooling_mode_max_tokens",
                         "pooling_mode_mean_sqrt_len_tokens", "pooling_mode_weightedmean_tokens",
                         "pooling_mode_lasttoken") if cfg.get(k)]
    if modes == ["pooling_mode_mean_tokens"]:
        return "mean"
    if modes == ["pooling_mode_cls_token"]:
        return "cls"
    return None


def _erf(x: np.ndarray) -> np.ndarray:
    """erf to ~1e-7 (Abramowitz & Stegun 7.1.26): BERT's exact GELU without importing SciPy."""
    sign = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return sign * (1.0 - poly * np.exp(-a * a))


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + _erf(x * 0.7071067811865476))  # a Python float keeps float32 (NEP 50)


def _layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    mu = x.mean(axis=-1, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def _batches(order: np.ndarray, lengths: list[int], size: int, tokens: int) -> list[np.ndarray]:
    """Consecutive runs of ``order`` (longest first) of at most ``size`` texts and ``tokens`` padded tokens."""
    out, start = [], 0
    while start < len(order):
        longest = lengths[order[start]]  # sorted longest first: the first sets the padding
        n = max(1, min(size, tokens // max(1, longest)))
        out.append(order[start:start + n])
        start += n
    return out


class NumpyBertEmbedder:
    """Embeds text with a BERT sentence-transformers folder, in NumPy (see the module doc)."""

    def __init__(self, name: str, folder: str | Path) -> None:
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        root = Path(folder)
        self.name = name
        cfg = _read_json(root / "config.json")
        st_cfg = _read_json(root / "sentence_bert_config.json") or {}
        modules = _read_json(root / "modules.json")
        self._pooling = _pooling_of(root, modules)
        self._normalize = any(m["type"] == _SUPPORTED_MODULES[2] for m in modules)
        self._heads = int(cfg["num_attention_heads"])
        self._eps = float(cfg.get("layer_norm_eps", 1e-12))
        self.dim = int(cfg["hidden_size"])
        max_len = int(st_cfg.get("max_seq_length") or cfg.get("max_position_embeddings", 512))
        self._max_len = min(max_len, int(cfg.get("max_position_embeddings", 512)))
        self._lower = bool(st_cfg.get("do_lower_case", False))

        self._tok = Tokenizer.from_file(str(root / "tokenizer.json"))
        self._tok.no_padding()
        self._tok.enable_truncation(max_length=self._max_len)

        w = load_file(str(root / "model.safetensors"))
        prefix = "bert." if "bert.embeddings.word_embeddings.weight" in w else ""
        g = lambda k: w[prefix + k].astype(np.float32)  # noqa: E731
        self._word = g("embeddings.word_embeddings.weight")
        self._pos = g("embeddings.position_embeddings.weight")
        self._type0 = g("embeddings.token_type_embeddings.weight")[0]
        self._emb_ln = (g("embeddings.LayerNorm.weight"), g("embeddings.LayerNorm.bias"))
        self._layers = []
        for i in range(int(cfg["num_hidden_layers"])):
            p = f"encoder.layer.{i}."
            qkv_w = np.concatenate([g(p + f"attention.self.{n}.weight") for n in ("query", "key", "value")]).T
            qkv_b = np.concatenate([g(p + f"attention.self.{n}.bias") for n in ("query", "key", "value")])
            self._layers.append((
                np.ascontiguousarray(qkv_w), qkv_b,
                np.ascontiguousarray(g(p + "attention.output.dense.weight").T), g(p + "attention.output.dense.bias"),
                (g(p + "attention.output.LayerNorm.weight"), g(p + "attention.output.LayerNorm.bias")),
                np.ascontiguousarray(g(p + "intermediate.dense.weight").T), g(p + "intermediate.dense.bias"),
                np.ascontiguousarray(g(p + "output.dense.weight").T), g(p + "output.dense.bias"),
                (g(p + "output.LayerNorm.weight"), g(p + "output.LayerNorm.bias")),
            ))

    # Padded tokens per forward pass: attention holds batch x heads x length^2 floats, so 64 chunks of
    # 200 tokens took 130 MB more than the same texts in smaller batches (peak RSS, benchmarks/perf.py).
    batch_tokens = 2048

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text, truncated as sentence-transformers does (microseconds; the model is not)."""
        prepared = [str(t).strip() for t in texts]
        if self._lower:
            prepared = [t.lower() for t in prepared]
        return [e.ids for e in self._tok.encode_batch(prepared)] if prepared else []

    def encode(self, texts: Sequence[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """Unit vectors (float32), one row per text, in the order given."""
        return self.encode_ids(self.tokenize(texts), batch_size, progress)

    def encode_ids(self, ids: list[list[int]], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """``encode`` for texts already tokenised (a caller that counted tokens need not tokenise twice)."""
        if not ids:
            return np.zeros((0, self.dim), dtype=np.float32)
        order = np.argsort([-len(x) for x in ids], kind="stable")  # similar lengths share a batch: less padding
        out = np.zeros((len(ids), self.dim), dtype=np.float32)
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(ids), desc="Batches", unit="text")
        for rows in _batches(order, [len(x) for x in ids], batch_size, self.batch_tokens):
            out[rows] = self._forward([ids[r] for r in rows])
            if bar is not None:
                bar.update(len(rows))
        if bar is not None:
            bar.close()
        return out

    def _forward(self, batch: list[list[int]]) -> np.ndarray:
        n, length = len(batch), max(len(x) for x in batch)
        ids = np.zeros((n, length), dtype=np.int64)
        mask = np.zeros((n, length), dtype=np.float32)
        for i, row in enumerate(batch):
            ids[i, :len(row)] = row
            mask[i, :len(row)] = 1.0
        x = self._word[ids] + self._pos[:length] + self._type0
        x = _layer_norm(x, *self._emb_ln, self._eps)
        h, d = self._heads, self.dim // self._heads
        bias = ((1.0 - mask) * np.finfo(np.float32).min)[:, None, None, :]
        scale = np.float32(1.0 / np.sqrt(d))  # a float64 scalar would turn every activation into float64
        for qkv_w, qkv_b, o_w, o_b, ln1, i_w, i_b, f_w, f_b, ln2 in self._layers:
            qkv = (x @ qkv_w + qkv_b).reshape(n, length, 3, h, d).transpose(2, 0, 3, 1, 4)
            scores = (qkv[0] @ qkv[1].transpose(0, 1, 3, 2)) * scale + bias
            scores -= scores.max(axis=-1, keepdims=True)
            probs = np.exp(scores)
            probs /= probs.sum(axis=-1, keepdims=True)
            ctx = (probs @ qkv[2]).transpose(0, 2, 1, 3).reshape(n, length, self.dim)
            x = _layer_norm(x + ctx @ o_w + o_b, *ln1, self._eps)
            x = _layer_norm(x + _gelu(x @ i_w + i_b) @ f_w + f_b, *ln2, self._eps)
        if self._pooling == "cls":
            pooled = x[:, 0]
        else:
            pooled = (x * mask[:, :, None]).sum(axis=1) / np.maximum(mask.sum(axis=1, keepdims=True), 1e-9)
        if self._normalize:
            pooled = pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return pooled.astype(np.float32)


class TorchBertEmbedder:
    """The same model and weights as a NumpyBertEmbedder, run on torch's threaded kernels: the bulk path.

    Why not sentence-transformers for bulk: importing transformers and sentence-transformers costs 5 s on
    top of torch's 1.6 s, paid by every build big enough to need torch (benchmarks/perf.py compares the
    build's throughput with a bare sentence-transformers encode). The math is the NumPy forward pass
    line for line; tests/test_embed.py holds the vectors to the NumPy and sentence-transformers ones.
    """

    def __init__(self, numpy_embedder: NumpyBertEmbedder) -> None:
        import torch

        self._torch = torch
        self._np = numpy_embedder
        self.name, self.dim = numpy_embedder.name, numpy_embedder.dim
        t = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731 - shares the NumPy memory
        e = numpy_embedder
        self._word, self._pos, self._type0 = t(e._word), t(e._pos), t(e._type0)
        self._emb_ln = tuple(t(a) for a in e._emb_ln)
        self._layers = [tuple(tuple(t(a) for a in p) if isinstance(p, tuple) else t(p) for p in layer)
                        for layer in e._layers]

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        return self._np.tokenize(texts)

    def encode(self, texts: Sequence[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """Unit vectors (float32), one row per text, in the order given."""
        ids = self.tokenize(texts)
        out = np.zeros((len(ids), self.dim), dtype=np.float32)
        if not ids:
            return out
        order = np.argsort([-len(x) for x in ids], kind="stable")
        with self._torch.inference_mode():
            for start in range(0, len(ids), batch_size):
                rows = order[start:start + batch_size]
                out[rows] = self._forward([ids[r] for r in rows])
        return out

    def _forward(self, batch: list[list[int]]) -> np.ndarray:
        torch = self._torch
        F = torch.nn.functional
        n, length = len(batch), max(len(x) for x in batch)
        ids = torch.zeros((n, length), dtype=torch.long)
        mask = torch.zeros((n, length), dtype=torch.bool)
        for i, row in enumerate(batch):
            ids[i, :len(row)] = torch.tensor(row, dtype=torch.long)
            mask[i, :len(row)] = True
        e = self._np
        x = self._word[ids] + self._pos[:length] + self._type0
        x = F.layer_norm(x, (self.dim,), *self._emb_ln, eps=e._eps)
        h, d = e._heads, self.dim // e._heads
        attn_mask = mask[:, None, None, :]
        for qkv_w, qkv_b, o_w, o_b, ln1, i_w, i_b, f_w, f_b, ln2 in self._layers:
            qkv = (x @ qkv_w + qkv_b).reshape(n, length, 3, h, d).permute(2, 0, 3, 1, 4)
            ctx = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], attn_mask=attn_mask)
            ctx = ctx.transpose(1, 2).reshape(n, length, self.dim)
            x = F.layer_norm(x + ctx @ o_w + o_b, (self.dim,), *ln1, eps=e._eps)
            x = F.layer_norm(x + F.gelu(x @ i_w + i_b) @ f_w + f_b, (self.dim,), *ln2, eps=e._eps)
        if e._pooling == "cls":
            pooled = x[:, 0]
        else:
            m = mask.to(x.dtype)[:, :, None]
            pooled = (x * m).sum(dim=1) / m.sum(dim=1).clamp(min=1e-9)
        if e._normalize:
            pooled = F.normalize(pooled, dim=1)
        return pooled.numpy().astype(np.float32)
