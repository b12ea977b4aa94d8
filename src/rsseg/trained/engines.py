"""Which engine runs a model file: a torch checkpoint or an ONNX file (``rsseg predict --engine``).

Above both engines and the exporter, which converts a checkpoint on the fly for ``--engine onnx``
(in ``onnx_engine`` it made a cycle with ``export``).
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

from rsseg.errors import RsSegError
from rsseg.trained.onnx_engine import Engine, load_onnx_predictor
from rsseg.trained.predictor import Predictor

log = logging.getLogger("rsseg.trained.onnx_engine")


def load_any_predictor(path: Path, device: Any = None) -> Predictor:
    """``.onnx`` -> onnxruntime predictor; anything else is read as a torch checkpoint."""
    return predictor_for(path, "auto", device)


def predictor_for(path: Path, engine: Engine = "auto", device: Any = None, *,
                  threads: int | None = None) -> Predictor:
    """Predictor for ``rsseg predict --engine``; ``threads``: onnxruntime's intra-op threads
    (torch models use torch's setting).

    * ``auto``: by suffix (``.onnx`` -> onnxruntime, otherwise torch checkpoint).
    * ``torch``: needs a checkpoint; an ``.onnx`` file has no torch weights.
    * ``onnx``: an ``.onnx`` file is used as is; a checkpoint is exported (and verified) to a
      temporary file first, which costs seconds: export once with ``rsseg export`` to reuse it.
    """
    path = Path(path)
    is_onnx = path.suffix.lower() == ".onnx"
    if engine == "auto":
        engine = "onnx" if is_onnx else "torch"
    if engine == "torch":
        if is_onnx:
            raise RsSegError(f"{path} is an ONNX model: use --engine onnx, or pass the .ckpt checkpoint")
        import torch  # lazy: an .onnx file is predicted without torch

        from rsseg.trained.checkpoint import load_predictor  # lazy: imports torch

        return load_predictor(path, device=torch.device(device) if device is not None else None)
    if engine != "onnx":
        raise RsSegError(f"unknown engine '{engine}'; choose torch or onnx")
    if is_onnx:
        return load_onnx_predictor(path, device, threads=threads)
    from rsseg.trained.export import export_onnx  # lazy: imports torch

    with tempfile.TemporaryDirectory(prefix="rsseg-onnx-") as tmp:
        onnx_path = export_onnx(path, Path(tmp) / f"{path.stem}.onnx")
        log.info("exported %s to a temporary ONNX model", path)
        return load_onnx_predictor(onnx_path, device, threads=threads)  # the session holds the graph in memory
