"""A trained model packaged with everything needed to turn raw pixels into class indices.

torch is imported only for torch models: a ``Predictor`` around a numpy model (the
onnxruntime engine, ``rsseg.trained.onnx_engine``) runs without it, so ``rsseg predict model.onnx``
never pays the ~0.55 GB of resident memory that ``import torch`` costs with the CUDA wheel.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from rsseg.classes import ClassTable
from rsseg.config.infer import InferConfig
from rsseg.errors import RsSegError

if TYPE_CHECKING:  # pragma: no cover
    import torch


@dataclass
class Predictor:
    """Model + class table + band selection + normalisation, and the checkpoint's defaults.

    ``mean``/``std`` are per selected band, in the raw pixel units of the input files
    (0-255 for 8-bit imagery), so the same numbers work for any data type.
    ``bands`` are 0-based indices into the input file's bands; ``None`` keeps all of them.

    ``model`` is a ``torch.nn.Module`` or a *numpy model*: a callable with a true
    ``takes_numpy`` attribute mapping float32 (B, C, h, w) arrays to float32 logits
    (B, K, h, w), such as ``rsseg.trained.onnx_engine.OrtModule``. ``device`` is a ``torch.device``
    (or its name) for torch models; numpy models run where they run.
    """

    model: Any
    classes: ClassTable
    mean: list[float]
    std: list[float]
    bands: list[int] | None = None
    #: the checkpoint's ``infer`` section: where a run's ``PredictOptions`` start (its window,
    #: keep, mode, batch...); the run's own tiling lives in those options, not here
    defaults: InferConfig = field(default_factory=InferConfig)
    #: arithmetic of ``logits`` (``defaults.precision`` resolved for the device at load;
    #: ``PredictOptions.configure`` sets a run's): maps independent of the machine by default
    precision: Literal["bf16", "32"] = "32"
    channels_last: bool = True
    device: Any = "cpu"
    #: the run's ``rsseg.config.Config`` when loaded from a checkpoint (data, model, infer...)
    config: Any = None
    #: (low, high) per model band of the normalised inputs an int8 model was calibrated on
    #: (``rsseg quantize``); scenes beyond it get a warning (``rsseg.infer.input_range``)
    input_range: tuple[list[float], list[float]] | None = None
    #: probabilities are softmax(logits / temperature), fitted by ``rsseg calibrate`` (classes unchanged)
    temperature: float = 1.0

    def __post_init__(self) -> None:
        if self.numpy_native:
            return
        import torch

        self.device = torch.device(self.device)
        self.model.eval().to(self.device)
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)

    @property
    def numpy_native(self) -> bool:
        """True when the model takes and returns numpy arrays (no torch needed)."""
        return bool(getattr(self.model, "takes_numpy", False))

    @property
    def in_channels(self) -> int:
        return len(self.mean)

    def check_bands(self, count: int, source: object = "the image") -> None:
        """One rule for every input (predict, explain, evaluate, index, quantize): the bands the
        model reads must exist in ``source``'s ``count``; without a band list, ``count`` must match."""
        if self.bands is not None:
            if any(not 0 <= b < count for b in self.bands):
                raise RsSegError(
                    f"{source} has {count} band(s) but the model reads bands "
                    f"{[b + 1 for b in self.bands]} (1-based)"
                )
        elif count != self.in_channels:
            raise RsSegError(
                f"{source} has {count} band(s) but the model expects {self.in_channels}; "
                "use an image with the training bands or a checkpoint trained on these"
            )

    def select_and_normalize(self, image: np.ndarray) -> np.ndarray:
        """(C_file, H, W) raw pixels -> (C, H, W) float32 normalised model input."""
        if self.bands is not None:
            image = image[self.bands]
        mean = np.asarray(self.mean, dtype=np.float32)[:, None, None]
        std = np.asarray(self.std, dtype=np.float32)[:, None, None]
        x = image.astype(np.float32)  # a copy: in place from here on, the same arithmetic
        x -= mean
        x /= std
        return x

    def logits(self, batch: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        """Normalised (B, C, h, w) float input -> float32 logits (B, K, h, w).

        A torch model returns a tensor (a numpy input is wrapped first); a numpy model
        returns an array for an array and a tensor for a tensor.
        """
        if self.numpy_native:
            if isinstance(batch, np.ndarray):
                return np.asarray(self.model(batch), dtype=np.float32)
            import torch  # the caller passed a tensor, so torch is loaded already

            arr = batch.detach().to("cpu", torch.float32).numpy()
            return torch.from_numpy(np.asarray(self.model(arr), dtype=np.float32)).to(batch.device)
        import torch

        if isinstance(batch, np.ndarray):
            batch = torch.from_numpy(batch)
        with torch.inference_mode():
            batch = batch.to(self.device)
            if self.channels_last:
                batch = batch.contiguous(memory_format=torch.channels_last)
            with torch.autocast(
                device_type=self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"
            ):
                out = self.model(batch)
            return out.float()
