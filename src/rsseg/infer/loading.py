"""Loading a model by path with either engine (torch checkpoint, ONNX file): what Dask
workers do once each, and what ``predict_files`` does when given a path."""

from __future__ import annotations

from pathlib import Path

import torch

from rsseg.predictor import Predictor


def load_model(path: Path, device: str | None = None, engine: str = "auto") -> Predictor:
    """``engine``: ``auto`` (by suffix: ``.onnx`` -> onnxruntime), ``torch`` or ``onnx``."""
    dev = torch.device(device) if device else None
    try:
        from rsseg.onnx_engine import predictor_for
    except ImportError:  # pragma: no cover - a build without the ONNX engine
        from rsseg.checkpoint import load_predictor

        return load_predictor(Path(path), device=dev)
    return predictor_for(Path(path), engine, dev)  # type: ignore[arg-type]
