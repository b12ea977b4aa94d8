"""DINO-style ViT embeddings of RGB chips for retrieval (seed 000 §5.2.2).

The ViT is built by timm with ``pretrained=False`` and loaded from a local weights file (a
DINO checkpoint, a safetensors file, a training checkpoint wrapping one): nothing is
downloaded. Memory: the model plus one batch of chips.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from rsseg.errors import RsSegError
from rsseg.safe_load import load_weights_only

#: DINO ViTs of the seed -> timm architecture.
DINO_ARCHS = {
    "dino-vits16": "vit_small_patch16_224",
    "dino-vits8": "vit_small_patch8_224",
    "dino-vitb16": "vit_base_patch16_224",
    "dino-vitb8": "vit_base_patch8_224",
}
_SHORT = {v: k.removeprefix("dino-vit") for k, v in DINO_ARCHS.items()}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ViTSpec:
    """A ViT embedding: timm ``arch`` (or a ``dino-vits16``-style alias), local ``weights``,
    ``pool`` ``cls`` or ``mean``; ``options`` go to ``timm.create_model`` (e.g. depth)."""

    arch: str
    weights: Path
    pool: str = "cls"
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "arch", DINO_ARCHS.get(self.arch, self.arch))
        object.__setattr__(self, "weights", Path(self.weights))
        if self.pool not in ("cls", "mean"):
            raise RsSegError(f"ViT pooling must be 'cls' or 'mean', got '{self.pool}'")

    @property
    def method(self) -> str:
        """Name of the embedding in an index: ``vit-s16``, ``vit-b8-mean``, ``vit-<arch>``."""
        name = "vit-" + _SHORT.get(self.arch, self.arch)
        return name + ("-mean" if self.pool == "mean" else "")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["weights"] = str(Path(self.weights).resolve())
        return d

    @classmethod
    def parse(cls, text: str, pool: str = "cls") -> ViTSpec:
        """``ARCH=WEIGHTS`` (command line) -> spec."""
        arch, sep, weights = text.partition("=")
        if not sep or not arch or not weights:
            raise RsSegError(f"--vit expects ARCH=WEIGHTS_FILE (e.g. dino-vits16=dino.pth), got '{text}'")
        return cls(arch.strip(), Path(weights.strip()), pool)


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise RsSegError(f"ViT weights file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            state: Any = load_file(str(path))
        except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's to fix
            raise RsSegError(f"{path} is not a readable weights file: {exc}") from None
    else:
        state = load_weights_only(path, "weights file")  # an unsafe or corrupt file: one line
    for key in ("teacher", "state_dict", "model"):  # DINO and training checkpoints wrap it
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise RsSegError(f"{path} holds no state dict of tensors")
    out = {}
    for k, v in state.items():
        for prefix in ("module.", "backbone."):
            k = k.removeprefix(prefix)
        if not k.startswith("head."):  # a classifier head is not part of the embedding
            out[k] = v
    return out


def _short_list(keys: list[str]) -> str:
    return ", ".join(keys[:6]) + (f" (+{len(keys) - 6} more)" if len(keys) > 6 else "")


def load_vit(spec: ViTSpec) -> nn.Module:
    """Build the timm ViT of ``spec`` and load its weights; a file that doesn't fit is named
    with its missing/unexpected keys."""
    import timm

    try:
        model = timm.create_model(
            spec.arch, pretrained=False, num_classes=0, dynamic_img_size=True,
            dynamic_img_pad=True, **spec.options,
        )
    except (RuntimeError, TypeError, ValueError) as exc:
        raise RsSegError(f"cannot build ViT '{spec.arch}' with timm: {exc}") from None
    state = _read_state(spec.weights)
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        raise RsSegError(f"{spec.weights} does not fit {spec.arch}: {exc}") from None
    if result.missing_keys or result.unexpected_keys:
        parts = []
        if result.missing_keys:
            parts.append(f"missing keys {_short_list(result.missing_keys)}")
        if result.unexpected_keys:
            parts.append(f"unexpected keys {_short_list(result.unexpected_keys)}")
        raise RsSegError(f"{spec.weights} does not fit {spec.arch}: {'; '.join(parts)}")
    return model.eval()


class ViTEmbedder:
    """RGB uint8 chips -> (B, D) ViT embeddings (ImageNet normalisation, as DINO)."""

    def __init__(self, spec: ViTSpec, device: torch.device | None = None) -> None:
        self.spec = spec
        self.device = device or torch.device("cpu")
        self.model = load_vit(spec).to(self.device)

    @torch.inference_mode()
    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(rgb)).to(self.device).permute(0, 3, 1, 2).float() / 255
        mean = torch.tensor(IMAGENET_MEAN, device=self.device)[:, None, None]
        std = torch.tensor(IMAGENET_STD, device=self.device)[:, None, None]
        tokens = self.model.forward_features((x - mean) / std)
        prefix = int(getattr(self.model, "num_prefix_tokens", 1))
        out = tokens[:, 0] if self.spec.pool == "cls" else tokens[:, prefix:].mean(dim=1)
        return out.float().cpu().numpy().astype(np.float32)
