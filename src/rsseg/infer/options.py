"""What to predict and how (``PredictOptions``) and what came out (``SceneResult``)."""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from rsseg.errors import RsSegError
from rsseg.gis.formats import suffix_of
from rsseg.infer.confidence import CONFIDENCES
from rsseg.infer.outputs import MAX_PREVIEW
from rsseg.infer.stitch import BLENDS
from rsseg.infer.windows import (
    DEFAULT_FAST_TILE,
    FAST_MULTIPLE,
    MODES,
    Grid,
    check_border,
    plan_grid,
)
from rsseg.trained.predictor import Predictor

#: Pixels per forward pass with ``low_memory``: 4 windows of 256 px, or one of 512 px. The demo
#: U-Net's activations take about 0.5 kB a pixel (torch or onnxruntime), so about 130 MB.
LOW_MEMORY_PIXELS = 4 * 256 * 256


@dataclass(frozen=True)
class PredictOptions:
    """Everything about a prediction run except the model and the files.

    ``mode`` (``rsseg.infer.windows``): None = the predictor's (the checkpoint's ``infer.mode``).
    ``window``/``keep``/``batch_size`` override the checkpoint's ``infer`` section; the
    ``fast`` mode keeps the same margin around tiles of at most ``fast_tile`` px.

    ``low_memory``: forward passes of at most ``LOW_MEMORY_PIXELS`` (batches of at most 4
    windows of 256 px, ``fast`` tiles of at most 480 px): the model's activations are most
    of the memory above the model itself (see the README). ``reference`` maps do not change;
    ``fast`` maps change as with a smaller ``fast_tile``; ``whole`` (one pass) is refused.

    ``overviews``: internal overviews in the class (and probability) GeoTIFF, for GIS viewers
    (``rsseg.infer.writers``); off by default, as they cost time after the last window.

    ``precision``: ``32``, ``bf16`` or ``auto`` replaces the checkpoint's ``infer.precision``
    (torch models only; an ONNX model always runs in fp32).

    ``confidence`` (``max``, ``margin`` or ``entropy``) writes ``<name>_confidence.tif`` and
    ``disagreement`` (with ``tta``) ``<name>_disagreement.tif`` (``rsseg.infer.confidence``).

    GIS outputs (``rsseg.infer.gis_outputs``): ``cog`` rewrites the finished rasters as
    Cloud-Optimized GeoTIFFs (on by default: GIS tools and web maps read them directly);
    ``vector`` (gpkg, parquet, geojson) adds ``<name>_polygons.*``, with ``simplify`` (map
    units) and ``min_area`` (m²); ``stac`` writes ``<name>_item.json``.
    """

    mode: str | None = None
    fast_tile: int = DEFAULT_FAST_TILE
    blend: str | None = None
    tta: bool = False
    probabilities: bool = False
    preview_max: int = MAX_PREVIEW
    window: int | None = None
    keep: int | None = None
    batch_size: int | None = None
    skip_existing: bool = False
    low_memory: bool = False
    overviews: bool = False
    precision: str | None = None
    confidence: str | None = None
    disagreement: bool = False
    cog: bool = True
    vector: str | None = None
    simplify: float | None = None
    min_area: float | None = None
    stac: bool = True

    def mode_for(self, predictor: Predictor) -> str:
        """The mode in use: ``mode``, else the predictor's (the checkpoint's ``infer.mode``)."""
        return self.mode if self.mode is not None else predictor.mode

    def resolved(self, predictor: Predictor) -> PredictOptions:
        """These options with ``mode`` filled in from ``predictor`` where it is None."""
        return dataclasses.replace(self, mode=self.mode_for(predictor))

    def configure(self, predictor: Predictor) -> Predictor:
        """A shallow copy of ``predictor`` with the overrides applied; in ``fast`` mode a torch
        model has BatchNorm folded into the convolutions (``rsseg.infer.fuse``)."""
        p = copy.copy(predictor)
        p.mode = self.mode_for(predictor)
        p.window = predictor.window if self.window is None else self.window  # 0 is refused, not ignored
        p.keep = predictor.keep if self.keep is None else self.keep
        p.batch_size = predictor.batch_size if self.batch_size is None else self.batch_size
        if self.low_memory:
            p.batch_size = max(1, min(p.batch_size, LOW_MEMORY_PIXELS // p.window**2))
        if self.precision is not None and not predictor.numpy_native:
            from rsseg.runtime import use_bf16  # lazy: imports torch: not for ONNX models

            p.precision = "bf16" if use_bf16(self.precision, p.device.type, key="--precision") else "32"
        if p.mode == "fast" and not predictor.numpy_native:  # onnxruntime fuses BatchNorm itself
            from rsseg.infer.fuse import fold_batchnorm  # lazy: torch: not for ONNX models

            p.model = fold_batchnorm(predictor.model)
        return p

    def check(self, predictor: Predictor) -> None:
        """Fail before any work on options that cannot run."""
        if self.precision not in (None, "32", "bf16", "auto"):
            raise RsSegError(f"unknown precision '{self.precision}'; choose 32, bf16 or auto")
        if self.precision == "bf16" and predictor.numpy_native:
            raise RsSegError("--precision bf16 needs a torch checkpoint: an ONNX model runs in fp32")
        if self.vector is not None:
            suffix_of(self.vector)  # an unknown format is refused here, before any work
        elif self.simplify is not None or self.min_area is not None:
            raise RsSegError("--simplify and --min-area shape the polygons: add --vector gpkg (or parquet, geojson)")
        if (self.simplify is not None and self.simplify <= 0) or (self.min_area is not None and self.min_area <= 0):
            raise RsSegError(f"--simplify and --min-area must be positive, got {self.simplify} and {self.min_area}")
        margin = self._border(predictor)
        if self.batch_size is not None and self.batch_size < 1:
            raise RsSegError(f"--batch-size must be at least 1, got {self.batch_size}")
        mode = self.mode_for(predictor)
        if mode not in MODES:
            raise RsSegError(f"unknown prediction mode '{mode}'; choose one of {', '.join(MODES)}")
        if mode == "whole" and self.low_memory:
            raise RsSegError("--low-memory caps forward passes, but --mode whole is one pass over the "
                             "scene: use --mode fast --low-memory")
        p = self.configure(predictor)
        if self.blend is not None:
            if self.blend not in BLENDS:
                raise RsSegError(f"unknown blending '{self.blend}'; choose one of {', '.join(BLENDS)}")
            if mode in ("naive", "whole") or margin == 0:
                raise RsSegError(f"blending needs a margin (window > keep) and not the {mode} mode")
            if p.keep < 2 * margin:
                raise RsSegError(f"blending needs keep >= 2 x margin, got keep {p.keep}, margin {margin}")
        if self.confidence is not None and self.confidence not in CONFIDENCES:
            raise RsSegError(f"unknown confidence '{self.confidence}'; choose one of {', '.join(CONFIDENCES)}")
        if self.disagreement and (not self.tta or self.blend is not None):
            raise RsSegError("--disagreement needs --tta (the 8 D4 views) and no --blend")
        if self.preview_max < 1:
            raise RsSegError(f"preview size must be positive, got {self.preview_max}")

    def _border(self, predictor: Predictor) -> int:
        """``check_border`` of the window/keep in use, naming the options that set them."""
        window = predictor.window if self.window is None else self.window
        keep = predictor.keep if self.keep is None else self.keep
        try:
            return check_border(window, keep)
        except RsSegError as exc:
            given = [f"--{k} {v}" for k, v in (("window", self.window), ("keep", self.keep)) if v is not None]
            raise RsSegError(f"{' '.join(given)}: {exc}" if given else str(exc)) from None

    def grid(self, predictor: Predictor, h: int, w: int) -> Grid:
        p = self.configure(predictor)
        tile = self.fast_tile
        if self.low_memory:  # windows (tile + 2 margins) of at most LOW_MEMORY_PIXELS
            margin = check_border(p.window, p.keep)
            tile = min(tile, max(FAST_MULTIPLE, math.isqrt(LOW_MEMORY_PIXELS) - 2 * margin))
        return plan_grid(h, w, p.mode, p.window, p.keep, tile)

    def tags(self, predictor: Predictor) -> dict[str, str]:
        """How the map was made, stored in the GeoTIFF and the area JSON."""
        p = self.configure(predictor)
        return {"rsseg_mode": p.mode, "rsseg_window": str(p.window), "rsseg_keep": str(p.keep),
                "rsseg_blend": self.blend or "none", "rsseg_tta": str(self.tta).lower(),
                "rsseg_precision": p.precision}


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
