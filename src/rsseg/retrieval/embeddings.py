"""Deep embeddings of image chips for retrieval beside EMD (seed 000 §5.2.1-5.2.2).

* ``backbone``: global max over the last encoder stage of the trained rsseg model (seed: the
  MobileNet backbone's 960 planes, L1 distance). The stage is found with
  ``rsseg.models.encoder_of`` and a forward hook when available, else the U-Net's ``encode()``.
* ViT (DINO ViT-S/16, S/8, B/16, B/8): a timm ViT built with ``pretrained=False`` and loaded
  from a local weights file (nothing is downloaded); CLS token or mean of the patch tokens.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rsseg.errors import RsSegError
from rsseg.trained.predictor import Predictor
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


# --------------------------------------------------------------------------- backbone


def _last_tensor(out: Any) -> torch.Tensor | None:
    """The deepest feature map of an encoder's output (tensor, list/tuple or dict)."""
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, dict):
        out = list(out.values())
    if isinstance(out, (list, tuple)):
        maps = [t for t in out if isinstance(t, torch.Tensor) and t.ndim == 4]
        return maps[-1] if maps else None
    return None


def _with_encode(model: nn.Module) -> nn.Module | None:
    for m in (model, getattr(model, "net", None)):
        if m is not None and callable(getattr(m, "encode", None)):
            return m
    return None


class _Reached(Exception):
    """Raised by the forward hook once the last encoder stage has run."""


def last_stage(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) normalised input -> the last encoder stage's (B, D, h, w) feature maps."""
    encoder = None
    try:
        # lazy: the model registry (torchvision, smp), only for backbone embeddings
        from rsseg.models import encoder_of  # type: ignore[attr-defined]
    except ImportError:
        encoder_of = None
    if encoder_of is not None:
        encoder = encoder_of(model)
    if encoder is not None:
        target = encoder[-1] if isinstance(encoder, (nn.ModuleList, nn.Sequential)) else encoder
        seen: list[Any] = []

        def stop(_m: nn.Module, _i: Any, out: Any) -> None:
            seen.append(out)
            raise _Reached  # the decoder's work is not needed

        handle = target.register_forward_hook(stop)
        try:
            model(x)
        except _Reached:
            pass
        finally:
            handle.remove()
        if seen and (feats := _last_tensor(seen[-1])) is not None:
            return feats
    unet = _with_encode(model)
    if unet is not None:
        stride = 2 ** int(getattr(unet, "depth", 0))
        pad_h, pad_w = (-x.shape[-2]) % stride, (-x.shape[-1]) % stride
        if pad_h or pad_w:
            mode = "reflect" if pad_h < x.shape[-2] and pad_w < x.shape[-1] else "replicate"
            x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
        return unet.encode(x)[-1]
    raise RsSegError(
        f"model {type(model).__name__} exposes no encoder (no encoder_of() match, no encode()): "
        "backbone embeddings are not available for it"
    )


@torch.inference_mode()
def backbone_embed(predictor: Predictor, chips: np.ndarray) -> np.ndarray:
    """Raw (B, C_file, h, w) chips -> (B, D) float32: global max of the last encoder stage."""
    x = torch.from_numpy(np.stack([predictor.select_and_normalize(c) for c in chips]))
    x = x.to(predictor.device)
    with torch.autocast(predictor.device.type, dtype=torch.bfloat16, enabled=predictor.precision == "bf16"):
        feats = last_stage(predictor.model, x)
    return feats.float().amax(dim=(-2, -1)).cpu().numpy().astype(np.float32)


# --------------------------------------------------------------------------- ViT


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


def to_rgb8(image: np.ndarray, bands: list[int] | None = None) -> np.ndarray:
    """(C, H, W) raw chip -> (H, W, 3) uint8 for ViTs and galleries (2-98 % stretch unless uint8)."""
    if bands is not None and len(bands) >= 3:
        image = image[list(bands[:3])]
    rgb = image[:3] if image.shape[0] >= 3 else np.repeat(image[:1], 3, axis=0)
    # lazy: rasterio, only for RGB previews
    from rsseg.infer.outputs import to_rgb8 as stretch_rgb8  # one 2-98 % stretch for the project

    return stretch_rgb8(rgb, None)
