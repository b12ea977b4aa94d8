"""What the Deepness QGIS plugin reads from an ONNX file, so an exported model runs inside QGIS.

Checked against the plugin's source (PUTvision/qgis-plugin-deepness, ``models/model_base.py``,
``preprocessing_utils.py``, ``segmentor.py``, ``tile_params.py``; Dec 2024):

- every ``metadata_props`` value is JSON (the plugin ``json.loads`` each one);
- a Segmentor's output is per-class *probabilities*: the plugin zeroes values under
  ``seg_thresh`` and takes the argmax, so the softmax lives in the graph (:class:`ProbabilityHead`);
- the plugin feeds raw band values / 255, then ``(x - standardization_mean) / standardization_std``,
  so rsseg's raw-unit mean/std divided by 255 give exactly rsseg's ``(raw - mean) / std`` for
  any data type (the plugin reads bands in their own type, not clipped to uint8);
- tiles are ``tile_size`` px (the docs say ``tiles_size``: both are written) and overlap by
  ``tiles_overlap`` percent of the tile; each tile keeps its centre, like Border Correction, so
  the overlap is rsseg's ``window - keep``;
- ``resolution`` is in cm per pixel: the plugin resamples the layer to it before tiling.
"""

from __future__ import annotations

import json
import logging

import torch
from torch import nn

from rsseg.trained.predictor import Predictor

log = logging.getLogger(__name__)

#: name of the graph output of a Deepness export
PROBABILITIES_NAME = "probabilities"


class ProbabilityHead(nn.Module):
    """``softmax(model(x) / T)`` over classes: the calibrated probabilities Deepness thresholds."""

    def __init__(self, model: nn.Module, temperature: float = 1.0) -> None:
        super().__init__()
        self.model = model
        self.temperature = float(temperature)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.model(x)
        if self.temperature != 1.0:
            logits = logits / self.temperature
        return torch.softmax(logits, dim=1)


def tiles_overlap(window: int, keep: int) -> int:
    """Border Correction margin (both sides) as the whole percent of the window Deepness takes."""
    return round(100 * (window - keep) / window)


def deepness_metadata(predictor: Predictor, resolution_m: float | None) -> dict[str, str]:
    """``metadata_props`` entries (key -> JSON text) for ``predictor``'s model; ``resolution``
    only when the training imagery's metres per pixel are known."""
    window = predictor.defaults.window
    meta = {
        "model_type": "Segmentor",
        "class_names": {str(i): name for i, name in enumerate(predictor.classes.names)},
        "tile_size": int(window),  # the key the plugin's code reads
        "tiles_size": int(window),  # the key the plugin's docs name
        "tiles_overlap": tiles_overlap(window, predictor.defaults.keep),
        "standardization_mean": [float(m) / 255.0 for m in predictor.mean],
        "standardization_std": [float(s) / 255.0 for s in predictor.std],
        "seg_thresh": 0.0,  # 0: plain argmax, the class map rsseg makes
    }
    if resolution_m is not None:
        meta["resolution"] = round(float(resolution_m) * 100.0, 4)
    return {key: json.dumps(value) for key, value in meta.items()}
