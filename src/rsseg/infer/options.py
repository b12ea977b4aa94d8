"""What to predict and how (``PredictOptions``, built from ``InferConfig``) and what came out (``SceneResult``)."""

from __future__ import annotations

import copy
import difflib
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ConfigDict, Field, ValidationError

from rsseg.config.infer import InferConfig
from rsseg.errors import RsSegError
from rsseg.infer.windows import FAST_MULTIPLE, Grid, check_border, plan_grid
from rsseg.trained.predictor import Predictor

#: Pixels per forward pass with ``low_memory``: 4 windows of 256 px, or one of 512 px. The demo
#: U-Net's activations take about 0.5 kB a pixel (torch or onnxruntime), so about 130 MB.
LOW_MEMORY_PIXELS = 4 * 256 * 256


class PredictOptions(InferConfig):
    """One prediction run's options: the checkpoint's ``infer`` section with the run's
    overrides, checked against the model, built once per run by ``PredictOptions.build``.

    Every field and its default is declared by ``InferConfig`` (one owner); here
    ``batch_size`` is resolved for the predictor's device and capped by ``low_memory``, and
    the object is frozen, so every scene of a run (Dask workers included) uses the same one.
    ``Predictor`` holds the model, classes, bands and normalisation, not the run's tiling.
    """

    model_config = ConfigDict(frozen=True, validate_assignment=False)

    batch_size: int = Field(1, ge=1, description="Windows per forward pass in this run: "
                            "`infer.batch_size` resolved for the device, capped by `low_memory`.")

    @classmethod
    def build(cls, predictor: Predictor, base: InferConfig | None = None, **overrides: Any) -> PredictOptions:
        """``base`` (default: the predictor's ``defaults``, the checkpoint's ``infer`` section)
        with ``overrides`` (None = not given, keep ``base``'s), validated once and checked
        against ``predictor``. Errors name the options as given."""
        given = {k: v for k, v in overrides.items() if v is not None}
        unknown = sorted(set(given) - set(InferConfig.model_fields))
        if unknown:
            hint = difflib.get_close_matches(unknown[0], list(InferConfig.model_fields), n=1)
            raise RsSegError(f"unknown prediction option '{unknown[0]}'"
                             + (f"; did you mean '{hint[0]}'?" if hint else "")
                             + f" (options: {', '.join(InferConfig.model_fields)})")
        base = predictor.defaults if base is None else base
        fields = {k: getattr(base, k) for k in InferConfig.model_fields}
        try:
            merged = InferConfig.model_validate({**fields, **given})
        except ValidationError as exc:
            raise RsSegError(_describe(exc, given)) from None
        batch = merged.batch_size
        if batch is None:  # auto: by device (an ONNX model's file records its batch)
            from rsseg.runtime import inference_batch_size  # lazy: imports torch: not for ONNX models

            device = "cpu" if predictor.numpy_native else predictor.device.type
            batch = inference_batch_size(None, device)
        if merged.low_memory:
            batch = max(1, min(batch, LOW_MEMORY_PIXELS // merged.window**2))
        options = cls.model_validate({**{k: getattr(merged, k) for k in InferConfig.model_fields},
                                      "batch_size": batch})
        options.check(predictor)
        return options

    def check(self, predictor: Predictor) -> None:
        """What the config cannot know: the model's engine and device. (Names are InferConfig's
        Literals, kept equal to the registries that own them by a test.)"""
        if self.precision == "bf16" and predictor.numpy_native:
            raise RsSegError("--precision bf16 needs a torch checkpoint: an ONNX model runs in fp32")
        if not predictor.numpy_native:  # bf16 asked for where it cannot run: before any work
            from rsseg.runtime import use_bf16  # lazy: imports torch: not for ONNX models

            use_bf16(self.precision, predictor.device.type, key="--precision")

    @property
    def margin(self) -> int:
        """Border Correction margin: cut from each side of a window."""
        return check_border(self.window, self.keep)

    def configure(self, predictor: Predictor) -> Predictor:
        """A shallow copy of ``predictor`` that runs in this run's precision; in ``fast`` mode a
        torch model has BatchNorm folded into the convolutions (``rsseg.infer.fuse``). Once per
        scene (``predict_scene``), not per window."""
        if predictor.numpy_native:  # onnxruntime runs in fp32 and fuses BatchNorm itself
            return predictor
        from rsseg.runtime import use_bf16  # lazy: imports torch: not for ONNX models

        p = copy.copy(predictor)
        p.precision = "bf16" if use_bf16(self.precision, p.device.type, key="--precision") else "32"
        if self.mode == "fast":
            from rsseg.infer.fuse import fold_batchnorm  # lazy: torch: not for ONNX models

            p.model = fold_batchnorm(predictor.model)
        return p

    def grid(self, h: int, w: int) -> Grid:
        """The window layout of an ``h`` x ``w`` scene."""
        tile = self.fast_tile
        if self.low_memory:  # windows (tile + 2 margins) of at most LOW_MEMORY_PIXELS
            tile = min(tile, max(FAST_MULTIPLE, math.isqrt(LOW_MEMORY_PIXELS) - 2 * self.margin))
        return plan_grid(h, w, self.mode, self.window, self.keep, tile)

    def tags(self, precision: str) -> dict[str, str]:
        """How the map was made (``precision``: the configured predictor's), stored in the
        GeoTIFF and the area JSON."""
        return {"rsseg_mode": self.mode, "rsseg_window": str(self.window), "rsseg_keep": str(self.keep),
                "rsseg_blend": self.blend or "none", "rsseg_tta": str(self.tta).lower(),
                "rsseg_precision": precision}


#: what a name-valued option is called in "unknown X 'name'; choose one of ..."
_NAMED = {"mode": "prediction mode", "blend": "blending", "confidence": "confidence", "precision": "precision",
          "vector": "vector format"}


def _describe(exc: ValidationError, given: dict[str, Any]) -> str:
    """One line per problem, naming the options that were given, as ``rsseg predict`` spells
    them (``--window 200 --keep 224: invalid border correction ...``)."""
    def flag(key: str) -> str:
        return f"--{key.replace('_', '-')} {given[key]}"

    lines = []
    for err in exc.errors():
        msg = err["msg"].removeprefix("Value error, ")
        key = ".".join(str(p) for p in err["loc"])
        if err["type"] == "literal_error" and key in _NAMED:
            choices = err["ctx"]["expected"].replace("'", "").replace(" or ", ", ")
            msg = f"unknown {_NAMED[key]} '{err['input']}'; choose one of {choices}"
        if key:  # one field
            lines.append(f"{flag(key)}: {msg}" if key in given else f"infer.{key}: {msg}")
        else:  # a rule between fields: name the given options it is about
            named = " ".join(flag(k) for k in given if k in msg)
            lines.append(f"{named}: {msg}" if named else msg)
    return "; ".join(lines)


@dataclass(eq=False)
class SceneResult(Mapping):
    """One scene's outcome; as a mapping it is its output paths (``result["classes"]``)."""

    input: Path
    paths: dict[str, Path] = field(default_factory=dict)
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    windows: int = 0
    seconds: float = 0.0
    skipped: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None

    def __getitem__(self, key: str) -> Path:
        return self.paths[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.paths)

    def __len__(self) -> int:
        return len(self.paths)


class ScenesFailed(RsSegError):
    """Some scenes failed (the others completed); ``results`` has every scene's outcome."""

    def __init__(self, results: list[SceneResult]) -> None:
        self.results = results
        failed = [r for r in results if not r.ok]
        if len(results) == 1:
            msg = failed[0].error
        else:
            lines = "\n".join(f"  {r.error}" for r in failed)
            msg = f"{len(failed)} of {len(results)} scenes failed (the others completed):\n{lines}"
        super().__init__(msg)
