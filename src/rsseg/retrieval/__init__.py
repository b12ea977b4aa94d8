"""Retrieval of similar places (seed 000 §5.2): EMD over predicted class histograms, spatial
scores, backbone, ViT and pretrained-encoder embeddings; an on-disk index, exact search,
Table-3 comparison.

Library entry points: ``build_index``, ``search_index``, ``compare_methods``. Imported lazily
so that the search core (numpy only) loads without torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "EncoderSpec": "rsseg.retrieval.embeddings",
    "RetrievalIndex": "rsseg.retrieval.index",
    "Searcher": "rsseg.retrieval.query",
    "ViTSpec": "rsseg.retrieval.vit",
    "build_index": "rsseg.retrieval.build",
    "compare_methods": "rsseg.retrieval.evaluate",
    "format_comparison": "rsseg.retrieval.evaluate",
    "search_index": "rsseg.retrieval.query",
    "top_n": "rsseg.retrieval.evaluate",
    "top_n_at_m": "rsseg.retrieval.evaluate",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'rsseg.retrieval' has no attribute {name!r}")


__all__ = [
    "EncoderSpec",
    "RetrievalIndex",
    "Searcher",
    "ViTSpec",
    "build_index",
    "compare_methods",
    "format_comparison",
    "search_index",
    "top_n",
    "top_n_at_m",
]
