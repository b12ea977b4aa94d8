"""A trained model packaged with everything needed to turn raw pixels into class indices."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from rsseg.classes import ClassTable


@dataclass
class Predictor:
    """Model + class table + band selection + normalisation + inference settings.

    ``mean``/``std`` are per selected band, in the raw pixel units of the input files
    (0-255 for 8-bit imagery), so the same numbers work for any data type.
    ``bands`` are 0-based indices into the input file's bands; ``None`` keeps all of them.
    """

    model: torch.nn.Module
    classes: ClassTable
    mean: list[float]
    std: list[float]
    bands: list[int] | None = None
    window: int = 256
    keep: int = 224
    batch_size: int = 8
    precision: Literal["bf16", "32"] = "bf16"
    channels_last: bool = True
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    #: the run's ``rsseg.config.Config`` when loaded from a checkpoint (data, model, infer...)
    config: Any = None

    def __post_init__(self) -> None:
        self.model.eval().to(self.device)
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)

    @property
    def in_channels(self) -> int:
        return len(self.mean)

    def select_and_normalize(self, image: np.ndarray) -> np.ndarray:
        """(C_file, H, W) raw pixels -> (C, H, W) float32 normalised model input."""
        if self.bands is not None:
            image = image[self.bands]
        mean = np.asarray(self.mean, dtype=np.float32)[:, None, None]
        std = np.asarray(self.std, dtype=np.float32)[:, None, None]
        return (image.astype(np.float32) - mean) / std

    @torch.inference_mode()
    def logits(self, batch: torch.Tensor) -> torch.Tensor:
        """Normalised (B, C, h, w) float input -> float32 logits (B, K, h, w)."""
        batch = batch.to(self.device)
        if self.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        with torch.autocast(
            device_type=self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"
        ):
            out = self.model(batch)
        return out.float()
