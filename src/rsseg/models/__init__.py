"""Model registry: a name in the config maps to a builder taking that model's config section.

Add an architecture by writing a builder ``(cfg, in_channels, num_classes) -> nn.Module`` and
registering it in ``MODELS``; its options are declared in ``rsseg.config``. The builder makes a
randomly initialised network; ``build_model`` then applies ``cfg.pretrained`` to the part
``encoder_of`` finds (``rsseg.models.pretrained``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from rsseg.config import Config
from rsseg.config.errors import union_members
from rsseg.errors import RsSegError
from rsseg.models.encoder_file import check_pretrained_file
from rsseg.models.encoders import encoder_signature
from rsseg.models.pretrained import (
    LoadReport,
    WeightsSource,
    adapt_first_conv,
    apply_pretrained,
    describe_weights_sources,
    resolve_pretrained,
    weights_sources,
)
from rsseg.models.swin_unet import build_swin_unet
from rsseg.models.unet import UNet
from rsseg.models.zoo import ZOO, encoder_of

ModelBuilder = Callable[[Any, int, int], nn.Module]


def _build_unet(cfg: Any, in_channels: int, num_classes: int) -> nn.Module:
    return UNet(in_channels, num_classes, base_width=cfg.base_width, depth=cfg.depth, up=cfg.up)


MODELS: dict[str, ModelBuilder] = {
    "unet": _build_unet,
    **ZOO,
    "swin-unet": build_swin_unet,
}


def build_model(cfg: Any, in_channels: int, num_classes: int, *, load_pretrained: bool = True) -> nn.Module:
    """Build the network named by ``cfg.name`` with logits at the input resolution.

    With ``cfg.pretrained`` the encoder gets those weights; ``load_pretrained=False`` builds the
    same architecture without reading them (for loading a checkpoint's own state dict).
    """
    try:
        builder = MODELS[cfg.name]
    except KeyError:
        raise RsSegError(
            f"unknown model '{cfg.name}'; available: {', '.join(sorted(MODELS))}"
        ) from None
    pretrained = getattr(cfg, "pretrained", None)
    source = resolve_pretrained(pretrained) if pretrained else None  # fail before building
    if isinstance(source, WeightsSource):
        source.check_fits(cfg)
    elif source is not None and load_pretrained:  # an rsseg-exported encoder: right encoder?
        check_pretrained_file(source, cfg, in_channels, strict_bands=False)
    model = builder(cfg, in_channels, num_classes)
    if source is not None:
        apply_pretrained(model, cfg, source, load=load_pretrained)
    return model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def model_configs() -> dict[str, type]:
    """The config section class of every model name declared in ``rsseg.config``."""
    return union_members(Config.model_fields["model"].annotation)


def describe_models(
    with_parameters: bool = False, in_channels: int = 3, num_classes: int = 7
) -> list[dict[str, Any]]:
    """One dict per registered model: ``name``, ``options`` ({option: default}), ``doc``
    ({option: description}) and, with ``with_parameters``, ``parameters`` for the given bands
    and classes (builds every model: slow for the large ones)."""
    configs = model_configs()
    rows = []
    for name in MODELS:
        cls = configs.get(name)
        fields = {k: v for k, v in cls.model_fields.items() if k != "name"} if cls else {}
        row: dict[str, Any] = {
            "name": name,
            "options": {k: v.get_default(call_default_factory=True) for k, v in fields.items()},
            "doc": {k: v.description or "" for k, v in fields.items()},
        }
        if with_parameters and cls is not None:
            row["parameters"] = count_parameters(build_model(cls(), in_channels, num_classes))
        rows.append(row)
    return rows


def compatible_models(sig: dict[str, Any], *, build: bool = False) -> list[Any]:
    """A config of every registered model whose encoder has signature ``sig``.

    With ``build``, models whose decoder refuses that encoder (e.g. SMP's UNet++ with a MiT
    encoder) are left out: each one is built once (slow for large encoders).
    """
    out = []
    for name, cls in model_configs().items():
        if name not in MODELS:
            continue
        updates: dict[str, Any] = {}
        if sig.get("family") == "smp" and name.startswith("smp-"):
            updates = {"encoder": sig["encoder"], "encoder_depth": sig["encoder_depth"]}
        elif sig.get("family") == "smp" and name == "segformer" and str(sig["encoder"]).startswith("mit_"):
            updates = {"variant": sig["encoder"].removeprefix("mit_")}
        elif sig.get("family") == "unet" and name == "unet":
            updates = {"base_width": sig["base_width"], "depth": sig["depth"]}
        try:
            cfg = cls(**updates)
        except ValueError:
            continue
        if encoder_signature(cfg) != sig:
            continue
        if build:
            try:
                build_model(cfg, 3, 2)
            except (RsSegError, ValueError, KeyError, RuntimeError):
                continue
        out.append(cfg)
    return out


__all__ = [
    "MODELS",
    "LoadReport",
    "adapt_first_conv",
    "build_model",
    "compatible_models",
    "count_parameters",
    "describe_models",
    "describe_weights_sources",
    "encoder_of",
    "model_configs",
    "weights_sources",
]
