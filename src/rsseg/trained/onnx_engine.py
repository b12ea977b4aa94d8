"""Predict with an exported ONNX model through onnxruntime, without torch weights or a checkpoint.

The session is wrapped in a numpy model (``OrtModule``) so a ``Predictor`` built from it runs
through the same Border Correction code (``rsseg.infer``) as a torch model. Everything else a
predictor needs (classes, bands, normalisation, window/keep) comes from the JSON that
``rsseg.trained.export`` stores in the ONNX file's ``metadata_props`` under :data:`METADATA_KEY`.

Loading and running an ``.onnx`` file never imports torch (only converting a checkpoint
does): ``import torch`` alone is about 0.55 GB of resident memory with the CUDA wheel, several
times what onnxruntime and the streamed buffers need (``make bench-infer`` reports both).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, Literal

import numpy as np

from rsseg.classes import ClassTable
from rsseg.config.infer import InferConfig
from rsseg.errors import RsSegError
from rsseg.trained.predictor import Predictor

log = logging.getLogger(__name__)

#: ``metadata_props`` key holding the rsseg JSON document.
METADATA_KEY = "rsseg"
#: Version of that document's layout; bump when a field changes meaning. 2 added
#: ``output_kind``: files whose graph ends in a softmax say so (older rsseg refuses them rather
#: than applying a second softmax); files of logits are still written as 1.
METADATA_FORMAT = 2
INPUT_NAME = "input"
OUTPUT_NAME = "logits"


def _log_probabilities(out: np.ndarray) -> np.ndarray:
    """Probabilities -> log-probabilities: logits up to a per-pixel constant, so the engine's
    softmax (with temperature, TTA averaging, blending) gives back the graph's probabilities
    instead of squashing them a second time. Underflowed zeros become log(tiny), not -inf."""
    return np.log(np.maximum(out, np.finfo(np.float32).tiny))


#: ``output_kind`` in the metadata -> what turns the graph's output into logits for the engine
OUTPUT_KINDS = {
    "logits": None,
    "probabilities": _log_probabilities,  # `rsseg export --deepness`: softmax inside the graph
}

Engine = Literal["auto", "torch", "onnx"]


def _ort():
    try:
        import onnxruntime
    except ImportError:  # pragma: no cover - depends on the environment
        raise RsSegError("the ONNX engine needs onnxruntime: pip install onnxruntime") from None
    return onnxruntime


def ort_errors() -> tuple[type[BaseException], ...]:
    """onnxruntime's own exception types (pybind classes deriving from Exception directly),
    plus the Python errors its wrapper raises for bad arguments."""
    from onnxruntime.capi import onnxruntime_pybind11_state as state

    names = ("Fail", "InvalidArgument", "InvalidGraph", "InvalidProtobuf", "NoSuchFile", "NoModel",
             "NotFound", "NotImplemented", "RuntimeException", "EPFail", "EngineError")
    found = tuple(getattr(state, n) for n in names if isinstance(getattr(state, n, None), type))
    return (*found, RuntimeError, ValueError, TypeError, OSError)


def _device_type(device: Any) -> str:
    """``cpu``/``cuda`` of a ``torch.device``, a name like ``"cuda:0"`` or None (cpu)."""
    if device is None:
        return "cpu"
    return str(getattr(device, "type", None) or str(device).split(":")[0])


def default_threads() -> int:
    """torch's thread count when torch is loaded (so both engines share the machine the same
    way), else ``OMP_NUM_THREADS`` or the CPUs this process may use, without importing it."""
    torch = sys.modules.get("torch")
    if torch is not None:
        return int(torch.get_num_threads())
    try:
        return max(1, int(os.environ.get("OMP_NUM_THREADS", "")))
    except ValueError:
        return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def _providers(device: Any) -> list[str]:
    available = _ort().get_available_providers()
    kind = _device_type(device)
    if kind == "cuda":
        if "CUDAExecutionProvider" not in available:
            raise RsSegError(
                "onnxruntime here has no CUDA provider (install onnxruntime-gpu) or use device cpu"
            )
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if kind != "cpu":
        raise RsSegError(f"the ONNX engine runs on cpu or cuda, not {kind}")
    return ["CPUExecutionProvider"]


def open_session(model: str | bytes | Path, device: Any = None, *, name: str = "",
                 threads: int | None = None) -> Any:
    """An onnxruntime session on ``device`` (cpu, cuda) with ``threads`` intra-op threads
    (default: ``default_threads()``); ``name`` is the file reported in errors."""
    ort = _ort()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(threads or default_threads())
    opts.inter_op_num_threads = 1
    # No memory pattern: it pre-plans one block per input shape on top of the arena (measured
    # on the demo U-Net: 1 x 3 x 1008 x 944 input +680 MB with it, +380 MB and 15 % faster
    # without; 8 x 3 x 256 x 256 +440 MB, +270 MB and as fast).
    opts.enable_mem_pattern = False
    opts.log_severity_level = 3  # errors only: ORT's warnings are not actionable for users
    source = str(model) if isinstance(model, Path) else model
    try:
        return ort.InferenceSession(source, sess_options=opts, providers=_providers(device))
    except ort_errors() as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise RsSegError(f"{name or 'model'} is not a loadable ONNX model (corrupt or truncated?): {msg}") from None


class OrtModule:
    """A numpy model (``takes_numpy``): float32 array (B, C, H, W) -> logits (B, K, H, W)
    computed by onnxruntime (log-probabilities for a graph that ends in a softmax). A torch tensor is accepted too and answered with a tensor.

    Inputs with a side smaller than ``stride`` are edge-padded here first, exactly as
    ``PadToStride`` replicate-pads in torch: the traced graph only knows the reflect branch.
    """

    takes_numpy = True

    def __init__(self, session: Any, stride: int = 1, output_kind: str = "logits") -> None:
        self.session = session
        self.stride = max(1, int(stride))
        self.input_name = session.get_inputs()[0].name
        self.to_logits = OUTPUT_KINDS[output_kind]

    def eval(self) -> OrtModule:  # the nn.Module calls callers may make: nothing to do
        return self

    def __call__(self, x: Any) -> Any:
        if not isinstance(x, np.ndarray):  # a torch tensor: torch is loaded already
            import torch

            out = self(x.detach().to("cpu", torch.float32).numpy())
            return torch.from_numpy(np.ascontiguousarray(out)).to(x.device)
        h, w = x.shape[-2:]
        s = self.stride
        pad_h, pad_w = (-h) % s, (-w) % s
        if (pad_h or pad_w) and not (pad_h < h and pad_w < w):
            x = np.pad(x, ((0, 0), (0, 0), (0, pad_h), (0, pad_w)), mode="edge")
        arr = np.ascontiguousarray(x, dtype=np.float32)
        (out,) = self.session.run(None, {self.input_name: arr})
        out = out[..., :h, :w]
        return out if self.to_logits is None else self.to_logits(out)

    forward = __call__


def read_metadata(session: Any, name: str = "") -> dict:
    """The rsseg JSON of an open session, checked for the fields a predictor needs."""
    raw = session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
    if raw is None:
        raise RsSegError(f"{name} has no rsseg metadata: export it with `rsseg export CHECKPOINT --onnx FILE`")
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise RsSegError(f"{name}: malformed rsseg metadata: {exc}") from None
    missing = [k for k in ("classes", "mean", "std", "window", "keep") if k not in meta]
    if missing:
        raise RsSegError(f"{name}: rsseg metadata lacks {', '.join(missing)}")
    if meta.get("format", 0) > METADATA_FORMAT:
        raise RsSegError(f"{name} was exported by a newer rsseg (metadata format {meta['format']})")
    if meta.get("output_kind", "logits") not in OUTPUT_KINDS:
        raise RsSegError(f"{name}: unknown output_kind {meta['output_kind']!r} in its rsseg metadata "
                         f"(known: {', '.join(OUTPUT_KINDS)})")
    return meta


def load_onnx_predictor(path: Path, device: Any = None, *, threads: int | None = None) -> Predictor:
    """Exported ``.onnx`` file -> ``Predictor`` (fp32, numpy arrays) running onnxruntime on
    ``device`` (cpu or cuda) with ``threads`` intra-op threads; torch is not imported."""
    path = Path(path)
    if not path.exists():
        raise RsSegError(f"ONNX model not found: {path}")
    if not path.is_file():
        raise RsSegError(f"ONNX model path is not a file: {path}")
    session = open_session(path, device, name=str(path), threads=threads)
    meta = read_metadata(session, str(path))
    try:
        classes = ClassTable.from_dict(meta["classes"])
    except RsSegError as exc:
        raise RsSegError(f"{path}: {exc}") from None
    bands = meta.get("bands")
    return Predictor(
        model=OrtModule(session, meta.get("stride", 1), meta.get("output_kind", "logits")),
        classes=classes,
        mean=[float(v) for v in meta["mean"]],
        std=[float(v) for v in meta["std"]],
        bands=[int(b) - 1 for b in bands] if bands else None,  # stored 1-based, as in configs
        defaults=_defaults(meta, path),
        precision="32",
        channels_last=False,
        device="cpu",  # ORT takes and returns host arrays whatever its provider
        input_range=_input_range(meta, len(meta["mean"]), path),
        temperature=float(meta.get("temperature", 1.0)),  # ``rsseg calibrate``, carried by export
    )


def _defaults(meta: dict, path: Path) -> InferConfig:
    """The file's prediction defaults: the exported ``infer`` section (format 2 files), else
    the window/keep/mode/batch keys every file has (``mode`` since infer.mode; before: reference).
    An ONNX model runs in fp32, whatever the checkpoint's ``infer.precision`` said."""
    saved = dict(meta.get("infer") or {})
    saved.update(window=int(meta["window"]), keep=int(meta["keep"]), mode=str(meta.get("mode", "reference")),
                 batch_size=int(meta.get("batch_size", 8)), precision="32")
    try:
        return InferConfig.model_validate(saved)
    except ValueError as exc:
        raise RsSegError(f"{path}: malformed prediction settings in its rsseg metadata: {exc}") from None


def _input_range(meta: dict, bands: int, path: Path) -> tuple[list[float], list[float]] | None:
    """The calibrated input range of an int8 file (``rsseg.trained.quantize``); None for fp32 files
    and for int8 files written before the range was recorded."""
    value = (meta.get("quantized") or {}).get("input_range")
    if value is None:
        return None
    try:
        low, high = ([float(v) for v in side] for side in value)
    except (TypeError, ValueError):
        raise RsSegError(f"{path}: malformed quantization metadata (input_range {value!r})") from None
    if len(low) != bands or len(high) != bands:
        raise RsSegError(f"{path}: input_range has {len(low)}/{len(high)} values for {bands} band(s)")
    return low, high
