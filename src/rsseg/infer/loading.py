"""Loading a model by path with either engine (torch checkpoint, ONNX file): what Dask
workers do once each, and what ``predict_files`` does when given a path. An ``.onnx`` file
is loaded without importing torch."""

from __future__ import annotations

from pathlib import Path

from rsseg.trained.predictor import Predictor


def load_model(path: Path, device: str | None = None, engine: str = "auto",
               threads: int | None = None) -> Predictor:
    """``engine``: ``auto`` (by suffix: ``.onnx`` -> onnxruntime), ``torch`` or ``onnx``;
    ``threads``: onnxruntime's intra-op threads (torch models follow torch's setting)."""
    try:
        from rsseg.trained.engines import predictor_for  # lazy: the engines import torch or onnxruntime
    except ImportError:  # pragma: no cover - a build without the ONNX engine
        import torch

        from rsseg.trained.checkpoint import load_predictor  # lazy: torch, as above

        return load_predictor(Path(path), device=torch.device(device) if device else None)
    return predictor_for(Path(path), engine, device, threads=threads)  # type: ignore[arg-type]
