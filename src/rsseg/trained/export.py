"""Export a checkpoint to a self-contained ONNX file that ``rsseg.trained.onnx_engine`` can predict with.

Exporter: the TorchScript-based one (``torch.onnx.export(..., dynamo=False)``). Measured with
torch 2.15: it exports the seed U-Net, SMP U-Net/resnet18 and SegFormer-b0 with dynamic batch,
height and width in 0.1-5 s, matching torch to ~1e-5. The torch.export-based ("dynamo")
exporter needs onnxscript (not a dependency), fails on the SMP models ("Cannot create Dim with
inconsistent min=0, max=-512") and baked the U-Net's no-padding branch into the graph.

Tracing records only the branch a sample input takes, so the sample's height and width are
deliberately *not* multiples of the model's stride: the graph then keeps the reflect padding of
``PadToStride``/``UNet`` with pad amounts computed from the input's shape, and any size works
(sides smaller than the stride are padded by ``OrtModule`` first, as torch would).
"""

from __future__ import annotations

import inspect
import io
import json
import logging
import math
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from rsseg import __version__
from rsseg.config.infer import InferConfig
from rsseg.errors import RsSegError
from rsseg.io import atomic_path
from rsseg.runtime import inference_batch_size
from rsseg.models.encoders import model_stride
from rsseg.trained.checkpoint import load_predictor, read_checkpoint
from rsseg.trained.deepness import PROBABILITIES_NAME, ProbabilityHead, deepness_metadata
from rsseg.trained.onnx_engine import (
    INPUT_NAME,
    METADATA_FORMAT,
    METADATA_KEY,
    OUTPUT_NAME,
    open_session,
    ort_errors,
)
from rsseg.trained.predictor import Predictor

log = logging.getLogger(__name__)

DEFAULT_OPSET = 17  # LayerNormalization is native from 17; onnxruntime >= 1.11 runs it
MAX_OPSET = 20  # the TorchScript exporter's ceiling in torch 2.15
#: verification fails when max |ORT - torch| > ATOL + RTOL * max |torch logits|
ATOL, RTOL = 1e-3, 1e-3


def trace_shape(stride: int, window: int) -> tuple[int, int]:
    """Sample (h, w) for tracing: neither side a multiple of ``stride`` and the pad smaller than
    the side, so the traced graph takes the reflect-padding branch."""
    if stride <= 1:
        return window, window
    n = max(2, math.ceil(64 / stride))
    return n * stride + 1, (n + 1) * stride + stride - 1


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def build_metadata(predictor: Predictor, stride: int, opset: int, *, probabilities: bool = False) -> dict:
    """Everything ``load_onnx_predictor`` needs, as a JSON-able dict; ``probabilities``: the
    graph ends in ``softmax(logits / temperature)`` (``--deepness``), recorded as ``output_kind``."""
    cfg, infer = predictor.config, predictor.defaults
    model_cfg = cfg.model.model_dump(mode="json") if cfg is not None else None
    temperature = float(getattr(predictor, "temperature", 1.0))
    kind = {"format": METADATA_FORMAT, "output_kind": "probabilities", "output": PROBABILITIES_NAME,
            # already applied in the graph: the engine must not divide again
            "temperature": 1.0, "graph_temperature": temperature} if probabilities else {}
    return {
        "format": 1,  # files of logits keep the layout older rsseg reads
        "rsseg_version": __version__,
        "torch_version": torch.__version__,
        "opset": opset,
        "classes": predictor.classes.to_dict(),
        "bands": [b + 1 for b in predictor.bands] if predictor.bands is not None else None,
        "mean": [float(v) for v in predictor.mean],
        "std": [float(v) for v in predictor.std],
        "window": infer.window,  # window/keep/mode/batch_size: what rsseg before `infer` read
        "keep": infer.keep,
        "mode": infer.mode,
        "batch_size": inference_batch_size(infer.batch_size, "cpu"),
        "infer": infer.model_dump(mode="json"),  # every prediction default (rsseg.config.infer)
        "stride": stride,
        "in_channels": predictor.in_channels,
        "num_classes": predictor.classes.num_classes,
        "model": model_cfg,
        "input": INPUT_NAME,
        "output": OUTPUT_NAME,
        "temperature": temperature,
        **kind,
    }


def _to_onnx_bytes(model: nn.Module, sample: torch.Tensor, opset: int, name: str,
                   output_name: str = OUTPUT_NAME) -> bytes:
    axes = {0: "batch", 2: "height", 3: "width"}
    # torch >= 2.9 defaults to the dynamo exporter; before 2.5 there was no choice to make
    legacy = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}
    buf = io.BytesIO()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # TracerWarnings and the exporter's deprecation notice
            torch.onnx.export(
                model,
                (sample,),
                buf,
                **legacy,
                input_names=[INPUT_NAME],
                output_names=[output_name],
                dynamic_axes={INPUT_NAME: axes, output_name: axes},
                opset_version=opset,
                do_constant_folding=True,
            )
    except (RuntimeError, TypeError, ValueError, AttributeError) as exc:  # OnnxExporterError is a RuntimeError
        raise RsSegError(f"cannot export {name} to ONNX: {_first_line(exc)}") from None
    return buf.getvalue()


def verify(session, model: nn.Module, shapes: list[tuple[int, ...]], name: str) -> float:
    """Run ORT and torch on random inputs of ``shapes``; return the worst max abs difference."""
    gen = torch.Generator().manual_seed(0)
    worst = 0.0
    for shape in shapes:
        x = torch.randn(*shape, generator=gen)
        with torch.no_grad():
            ref = model(x).float().numpy()
        try:
            (got,) = session.run(None, {INPUT_NAME: x.numpy()})
        except ort_errors() as exc:
            raise RsSegError(f"{name}: the exported graph fails on a {shape} input: {_first_line(exc)}") from None
        if got.shape != ref.shape:
            raise RsSegError(f"{name}: ONNX output {got.shape} != torch {ref.shape} for a {shape} input")
        diff = float(np.abs(got - ref).max())
        scale = float(np.abs(ref).max())
        agree = float((got.argmax(1) == ref.argmax(1)).mean())
        log.info("ONNX check %s: max abs diff %.3g (outputs up to %.3g), argmax agreement %.5f",
                 shape, diff, scale, agree)
        if not diff <= ATOL + RTOL * scale:  # also catches NaN
            raise RsSegError(
                f"{name}: ONNX and torch disagree on a {shape} input: max abs diff {diff:.3g} "
                f"(outputs up to {scale:.3g}, tolerance {ATOL + RTOL * scale:.3g}), "
                f"argmax agreement {agree:.4%}"
            )
        worst = max(worst, diff)
    return worst


def export_predictor(predictor: Predictor, out: Path, *, opset: int | None = None, name: str = "model",
                     deepness: bool = False, resolution_m: float | None = None) -> Path:
    """Export ``predictor.model`` (fp32, CPU, eval) with its metadata to ``out``, verified first.

    ``deepness``: the graph outputs calibrated class probabilities and the file carries the
    metadata the Deepness QGIS plugin reads (``rsseg.trained.deepness``), ``resolution`` from
    ``resolution_m`` (metres per pixel of the training imagery) when known."""
    import onnx

    out = Path(out)
    opset = DEFAULT_OPSET if opset is None else int(opset)
    if not 9 <= opset <= MAX_OPSET:
        raise RsSegError(f"ONNX opset {opset} is not supported (use 9..{MAX_OPSET})")
    if out.exists() and out.is_dir():
        raise RsSegError(f"ONNX output path is a directory: {out}")
    model = predictor.model.to("cpu", torch.float32).to(memory_format=torch.contiguous_format).eval()
    stride = model_stride(model)
    c, window = predictor.in_channels, predictor.defaults.window
    sample = torch.randn(1, c, *trace_shape(stride, window), generator=torch.Generator().manual_seed(1))
    meta = build_metadata(predictor, stride, opset, probabilities=deepness)
    if deepness:
        model = ProbabilityHead(model, meta["graph_temperature"]).eval()
    proto = onnx.load_from_string(_to_onnx_bytes(model, sample, opset, name, meta["output"]))
    props = {METADATA_KEY: json.dumps(meta)}
    if deepness:
        props |= deepness_metadata(predictor, resolution_m)
        if resolution_m is None:
            log.warning("%s: the training imagery's resolution is unknown (no CRS, or a checkpoint older than "
                        "rsseg records it): no `resolution` for Deepness; pass --resolution CM_PER_PX or set "
                        "it in the plugin to the training data's scale", out)
    for key, value in props.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.producer_name, proto.producer_version = "rsseg", __version__
    proto.doc_string = f"rsseg {meta['model']['name'] if meta['model'] else 'model'}: {name}"
    data = proto.SerializeToString()

    session = open_session(data, name=str(out))
    odd = (max(stride + 1, window // 2 + 3), window + 5)  # not multiples of the stride
    diff = verify(session, model, [(2, c, window, window), (1, c, *odd)], str(out))
    with atomic_path(out, min_size=len(data)) as tmp:  # the whole model, or the old file stays
        tmp.write_bytes(data)
    log.info("wrote %s (%.1f MB, max abs diff vs torch %.2g)", out, len(data) / 1e6, diff)
    return out


def export_onnx(checkpoint: Path, out: Path, *, opset: int | None = None, window: int | None = None,
                deepness: bool = False, resolution_cm: float | None = None) -> Path:
    """Checkpoint -> verified ONNX file with dynamic batch/height/width and rsseg metadata.

    ``window`` replaces the checkpoint's inference window in the metadata; the kept centre
    shrinks or grows with it so the Border Correction margin stays the same. ``deepness``: see
    ``export_predictor``; ``resolution_cm`` replaces the resolution the checkpoint recorded.
    """
    checkpoint = Path(checkpoint)
    if resolution_cm is not None and not (deepness and resolution_cm > 0):
        raise RsSegError(f"--resolution {resolution_cm} needs --deepness and a positive cm per pixel")
    predictor = load_predictor(checkpoint, device=torch.device("cpu"))
    predictor.precision, predictor.channels_last = "32", False
    if window is not None:
        margin2 = predictor.defaults.window - predictor.defaults.keep
        if window <= margin2:
            raise RsSegError(
                f"window {window} leaves nothing to keep with the checkpoint's margin "
                f"({margin2 // 2} px each side): use a window larger than {margin2}"
            )
        infer = {**predictor.defaults.model_dump(), "window": window, "keep": window - margin2}
        predictor.defaults = InferConfig.model_validate(infer)
    resolution_m = None
    if deepness:
        recorded = read_checkpoint(checkpoint)["hyper_parameters"].get("resolution_m")
        resolution_m = resolution_cm / 100.0 if resolution_cm is not None else recorded
    return export_predictor(predictor, out, opset=opset, name=str(checkpoint), deepness=deepness,
                            resolution_m=resolution_m)
