"""Deep embeddings of image chips for retrieval beside EMD (seed 000 §5.2.1-5.2.2).

* ``backbone``: global max over the last encoder stage of the trained rsseg model (seed: the
  MobileNet backbone's 960 planes, L1 distance). The stage is found with
  ``rsseg.models.encoder_of`` and a forward hook when available, else the U-Net's ``encode()``.
* ViT (DINO ViT-S/16, S/8, B/16, B/8; ``rsseg.retrieval.vit``): a timm ViT built with
  ``pretrained=False`` and loaded from a local weights file (nothing is downloaded); CLS token
  or mean of the patch tokens.
* ``encoder=SOURCE``: a self-supervised (or any pretrained) encoder, a built-in weights source
  (``rsseg.models.sources``, e.g. ``geoembed-aerial-resnet18``) or an encoder file exported by
  ``rsseg pretrain``; global average of its deepest feature map. Stored as ``encoder-<name>``.

Each kind is an ``EMBEDDING_KINDS`` entry: its default metric and how to make the chip -> vector
function from the manifest's description, so building and searching share one code path.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rsseg.errors import RsSegError
from rsseg.infer.options import PredictOptions
from rsseg.retrieval.vit import ViTEmbedder, ViTSpec
from rsseg.trained.predictor import Predictor


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


# --------------------------------------------------------------------------- pretrained encoder

ENCODER_HINT = "or the path of an encoder file exported by `rsseg pretrain` (.safetensors/.pt)"


def _builtin_sources() -> dict[str, Any]:
    # lazy: the weights-source registry imports the model zoo (smp, timm)
    from rsseg.models.pretrained import weights_sources

    return weights_sources


@dataclass(frozen=True)
class EncoderSpec:
    """An encoder embedding: ``source`` is a built-in weights source name or an rsseg-exported
    encoder file (its metadata says which model it belongs to). Checked when made."""

    source: str

    def __post_init__(self) -> None:
        sources = _builtin_sources()
        if self.source in sources:
            return
        # lazy: reads safetensors/torch file headers
        from rsseg.models.encoder_file import read_metadata

        path = Path(self.source).expanduser()
        if not path.is_file():
            raise RsSegError(
                f"--embed encoder={self.source}: unknown encoder source; use a built-in source "
                f"({', '.join(sources)}) {ENCODER_HINT}"
            )
        if read_metadata(path) is None:
            raise RsSegError(
                f"--embed encoder={self.source}: {path} is not an encoder file exported by `rsseg pretrain` "
                f"(no rsseg metadata, so its architecture is unknown); built-in sources: {', '.join(sources)}"
            )
        object.__setattr__(self, "source", str(path.resolve()))

    @property
    def builtin(self) -> bool:
        return self.source in _builtin_sources()

    @property
    def method(self) -> str:
        """Name in an index: ``encoder-<source>`` or ``encoder-<file stem>`` (no ``:``, which
        separates the metric in ``--by NAME:l2``; only characters safe in file names)."""
        name = self.source if self.builtin else Path(self.source).stem
        return "encoder-" + re.sub(r"[^A-Za-z0-9._-]+", "_", name)

    @property
    def reads_rgb(self) -> bool:
        """True: reads 8-bit RGB previews (a source with documented RGB stats); False: the
        checkpoint's bands."""
        return self.builtin and _builtin_sources()[self.source].input_stats is not None

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source}

    @classmethod
    def parse(cls, text: str) -> EncoderSpec:
        """``encoder=SOURCE`` (command line) -> spec."""
        _, _, source = text.partition("=")
        if not source.strip():
            raise RsSegError(f"--embed encoder=SOURCE needs a source, got '{text}'")
        return cls(source.strip())


class EncoderEmbedder:
    """Raw (B, C_file, h, w) chips -> (B, D): global average of the encoder's deepest stage.

    Normalisation is the one the weights expect: a built-in source with documented stats
    (``WeightsSource.input_stats``, e.g. geoembed's RGB in [-1, 1]) reads the chips' 8-bit RGB
    (``to_rgb8``, as ViTs); an exported file reads the checkpoint's bands with the mean/std it
    was pretrained with (its metadata); otherwise the checkpoint's own mean/std.
    """

    def __init__(self, spec: EncoderSpec, predictor: Predictor, rgb_bands: list[int] | None = None) -> None:
        # lazy: the model registry (smp, timm), only for encoder embeddings
        from rsseg.models import build_model, model_configs
        from rsseg.models.encoder_file import read_metadata

        self.spec, self.predictor, self.rgb_bands = spec, predictor, rgb_bands
        self.device = predictor.device
        channels = len(predictor.mean)
        mean, std = list(predictor.mean), list(predictor.std)
        if spec.builtin:
            source = _builtin_sources()[spec.source]
            model_dict = {"name": source.models[0], "encoder": source.encoders[0]}
            if source.input_stats is not None:
                channels = 3
                mean, std = [255 * m for m in source.input_stats[0]], [255 * s for s in source.input_stats[1]]
            self.stats = "source" if source.input_stats is not None else "checkpoint"
        else:
            meta = read_metadata(Path(spec.source)) or {}
            model_dict = dict(meta.get("model") or {})
            if meta.get("in_channels") not in (None, channels):
                raise RsSegError(
                    f"encoder file {spec.source} was pretrained on {meta['in_channels']} bands, "
                    f"the checkpoint reads {channels}: use an encoder of the same bands"
                )
            own_mean, own_std = meta.get("mean"), meta.get("std")
            self.stats = "checkpoint"
            if own_mean and own_std and len(own_mean) == len(own_std) == channels:
                mean, std, self.stats = list(own_mean), list(own_std), "file"
        configs = model_configs()
        if model_dict.get("name") not in configs:
            raise RsSegError(f"encoder source {spec.source}: unknown model '{model_dict.get('name')}'")
        try:
            cfg = configs[model_dict["name"]].model_validate({**model_dict, "pretrained": spec.source})
        except ValueError as exc:
            raise RsSegError(f"encoder source {spec.source}: bad model description: {exc}") from None
        self.model = build_model(cfg, channels, 1).to(self.device).eval().requires_grad_(False)
        self.mean = torch.tensor(mean, dtype=torch.float32, device=self.device)[:, None, None]
        self.std = torch.tensor(std, dtype=torch.float32, device=self.device)[:, None, None]
        self.rgb = spec.reads_rgb

    @torch.inference_mode()
    def __call__(self, raw: np.ndarray) -> np.ndarray:
        # lazy: the model registry, only for encoder embeddings
        from rsseg.models.encoders import pooled_embedding

        if self.rgb:
            pixels = np.stack([to_rgb8(c, self.rgb_bands).transpose(2, 0, 1) for c in raw])
        else:
            bands = self.predictor.bands
            pixels = np.stack([c[bands] if bands is not None else c for c in raw])
        x = torch.from_numpy(np.ascontiguousarray(pixels)).to(self.device).float()
        return pooled_embedding(self.model, (x - self.mean) / self.std).cpu().numpy().astype(np.float32)


# --------------------------------------------------------------------------- registry

Embed = Callable[[np.ndarray], np.ndarray]
"""Raw (B, C_file, h, w) chips -> (B, D) float32 embeddings."""


@dataclass(frozen=True)
class BackboneSpec:
    """The trained model's own backbone (``--embed backbone``)."""

    @property
    def method(self) -> str:
        return "backbone"

    def to_dict(self) -> dict[str, Any]:
        return {}


@dataclass(frozen=True)
class EmbeddingKind:
    """One kind of embedding: its spec class, default ``metric`` in the index, the function
    making the embedder from the manifest's description (``make(info, predictor, rgb_bands)``)
    and how many chips go through it at once (memory stays bounded)."""

    spec: type
    metric: str
    make: Callable[[dict[str, Any], Predictor, list[int] | None], Embed]
    batch: Callable[[Predictor], int]


def _make_backbone(info: dict[str, Any], predictor: Predictor, rgb_bands: list[int] | None) -> Embed:
    return lambda raw: backbone_embed(predictor, raw)


def _make_vit(info: dict[str, Any], predictor: Predictor, rgb_bands: list[int] | None) -> Embed:
    spec = ViTSpec(info["arch"], Path(info["weights"]), info["pool"], info.get("options", {}))
    model = ViTEmbedder(spec, predictor.device)
    return lambda raw: model(np.stack([to_rgb8(c, rgb_bands) for c in raw]))


def _make_encoder(info: dict[str, Any], predictor: Predictor, rgb_bands: list[int] | None) -> Embed:
    return EncoderEmbedder(EncoderSpec(info["source"]), predictor, rgb_bands)


EMBEDDING_KINDS: dict[str, EmbeddingKind] = {
    # the chips go through the model as `rsseg predict` windows do: its batch for this device
    "backbone": EmbeddingKind(BackboneSpec, "l1", _make_backbone, lambda p: PredictOptions.build(p).batch_size),
    "vit": EmbeddingKind(ViTSpec, "l2", _make_vit, lambda p: 8),
    "encoder": EmbeddingKind(EncoderSpec, "l2", _make_encoder, lambda p: 8),
}
"""Embedding kinds by the name stored in an index manifest (``embeddings.<name>.kind``)."""

EmbeddingSpec = BackboneSpec | ViTSpec | EncoderSpec


def kind_of(spec: EmbeddingSpec) -> str:
    return next(k for k, v in EMBEDDING_KINDS.items() if isinstance(spec, v.spec))


def parse_embedding(value: str | EmbeddingSpec) -> EmbeddingSpec:
    """``backbone`` or ``encoder=SOURCE`` (``--embed``), or a spec as is."""
    if not isinstance(value, str):
        return value
    if value == "backbone":
        return BackboneSpec()
    if value.startswith("encoder="):
        return EncoderSpec.parse(value)
    raise RsSegError(
        f"--embed: unknown embedding '{value}'; use backbone or encoder=SOURCE "
        f"(SOURCE: {', '.join(_builtin_sources())} {ENCODER_HINT}); ViTs: --vit ARCH=WEIGHTS"
    )


def make_embedder(kind: str, info: dict[str, Any], predictor: Predictor, rgb_bands: list[int] | None) -> Embed:
    """The chip -> vector function of an embedding described by ``info`` (a manifest entry)."""
    if kind not in EMBEDDING_KINDS:
        raise RsSegError(f"unknown embedding kind '{kind}'; known: {', '.join(EMBEDDING_KINDS)}")
    return EMBEDDING_KINDS[kind].make(info, predictor, rgb_bands)


def to_rgb8(image: np.ndarray, bands: list[int] | None = None) -> np.ndarray:
    """(C, H, W) raw chip -> (H, W, 3) uint8 for ViTs and galleries (2-98 % stretch unless uint8)."""
    if bands is not None and len(bands) >= 3:
        image = image[list(bands[:3])]
    rgb = image[:3] if image.shape[0] >= 3 else np.repeat(image[:1], 3, axis=0)
    # lazy: rasterio, only for RGB previews
    from rsseg.infer.outputs import to_rgb8 as stretch_rgb8  # one 2-98 % stretch for the project

    return stretch_rgb8(rgb, None)
