"""Whole-scene prediction: streamed, Border-Corrected, on one machine or a Dask cluster.

Modules: ``windows`` (window planning and modes), ``reader`` (strips with edge reflection),
``engine`` (model calls, TTA), ``stitch`` (kept centres or blending), ``writers`` (tiled
GeoTIFF outputs), ``confidence`` (confidence and TTA disagreement maps), ``outputs`` (PNGs,
area JSON), ``areas``, ``seams`` (seam score),
``fuse`` (BatchNorm folding for ``fast``), ``stream`` (one scene), ``api`` (entry points),
``loading`` (checkpoint or ONNX by path) and ``dask_runner`` (many scenes on Dask).
"""

from rsseg.infer.api import (
    border_corrected_predict,
    count_scene_windows,
    predict_file,
    predict_files,
)
from rsseg.infer.options import PredictOptions, SceneResult, ScenesFailed
from rsseg.infer.outputs import MAX_PREVIEW
from rsseg.infer.reader import read_image
from rsseg.infer.seams import SeamScore, seam_score
from rsseg.infer.stitch import BLENDS
from rsseg.infer.windows import MODES, count_windows, plan_grid

__all__ = [
    "BLENDS",
    "MAX_PREVIEW",
    "MODES",
    "PredictOptions",
    "SceneResult",
    "ScenesFailed",
    "SeamScore",
    "border_corrected_predict",
    "count_scene_windows",
    "count_windows",
    "plan_grid",
    "predict_file",
    "predict_files",
    "read_image",
    "seam_score",
]
