"""Pretrained encoder weights, strictly offline (``model.pretrained``).

A value is a built-in source (``weights_sources``: weights shipped in an installed package,
mapped onto one encoder type) or a local file (.pth/.pt/.ckpt/.bin/.safetensors/.npz; a state
dict, possibly nested under ``state_dict``/``model``, with any key prefix such as ``module.``,
``encoder.`` or a Lightning ``model.net.encoder.``). Nothing is ever downloaded: a hub name
fails at once. Only the encoder (``encoder_of``) is initialised, and every one of its tensors
must come from the weights: a file that does not fit names its missing and unexpected keys and
its shape mismatches instead of half-loading. A first convolution with another number of
input bands is adapted by :func:`adapt_first_conv`.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rsseg.errors import RsSegError
from rsseg.models.sources import SOURCES, WeightsSource
from rsseg.models.zoo import encoder_of
from rsseg.safe_load import load_weights_only

log = logging.getLogger("rsseg.models")

WEIGHT_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin", ".safetensors", ".npz")
OFFLINE_HINT = (
    "weights are never downloaded (offline: pass a local file "
    f"{'/'.join(WEIGHT_SUFFIXES)} or a built-in source)"
)
# top-level names of classifier heads / final norms, which a feature encoder does not have
HEAD_KEYS = {"fc", "_fc", "classifier", "head", "last_linear", "aux_classifier",
             "conv_head", "_conv_head", "bn2", "_bn1", "norm", "fc_norm", "pre_logits"}


@dataclass
class LoadReport:
    """What a load did: tensors loaded, first-conv adaptation, head keys left out."""

    source: str
    loaded: list[str] = field(default_factory=list)
    adapted: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- first convolution


def adapt_first_conv(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """Kernel (O, C0, k, k) of a network trained on C0 bands -> (O, in_channels, k, k).

    ``in_channels == 1``: the sum over the C0 bands (a grey image gives the response the
    original network gives to the grey C0-band image). Otherwise the bands are repeated
    cyclically (band i gets kernel i mod C0) and scaled by C0 / in_channels, so an input whose
    bands are ``in_channels / C0`` copies of the C0 bands gives exactly the original response
    (and for C < C0 the first C kernels, scaled). The same rule as SMP's ``patch_first_conv``.
    """
    c0 = weight.shape[1]
    if in_channels == c0:
        return weight.clone()
    if in_channels == 1:
        return weight.sum(dim=1, keepdim=True)
    index = torch.arange(in_channels) % c0
    return weight[:, index] * (c0 / in_channels)


def first_conv_key(module: nn.Module) -> str | None:
    """State-dict name of the weight of the first ``Conv2d`` (the one that sees the bands)."""
    for name, sub in module.named_modules():
        if isinstance(sub, nn.Conv2d):
            return f"{name}.weight" if name else "weight"
    return None


# --------------------------------------------------------------------------- files


def _unwrap(obj: Any) -> Mapping[str, Any]:
    while isinstance(obj, Mapping):
        inner = next((obj[k] for k in ("state_dict", "model", "module") if isinstance(obj.get(k), Mapping)), None)
        if inner is None or any(isinstance(v, torch.Tensor) for v in obj.values()):
            return obj
        obj = inner
    raise RsSegError("holds no state dict")


def read_weights_file(path: Path) -> dict[str, torch.Tensor]:
    """All tensors of a weights file, unwrapped from ``state_dict``/``model`` if nested."""
    suffix = path.suffix.lower()
    if suffix not in (".safetensors", ".npz"):  # a pickle: weights-only, so opening it never runs code
        obj = load_weights_only(path, "weights file")
        try:
            return {k: v for k, v in _unwrap(obj).items() if isinstance(v, torch.Tensor)}
        except RsSegError as exc:
            raise RsSegError(f"weights file {path} {exc}") from None
    try:
        if suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        if suffix == ".npz":
            import numpy as np

            with np.load(path, allow_pickle=False) as data:  # metadata arrays (ints) left out
                return {k: torch.from_numpy(data[k]) for k in data.files if data[k].dtype.kind == "f"}
    except Exception as exc:  # noqa: BLE001 (torch, numpy, safetensors: many types for a bad file)
        raise RsSegError(f"cannot read weights file {path}: {type(exc).__name__}: {exc}") from None


def not_found_message(value: str, what: str) -> str:
    """Why ``value`` is no usable weights, with the offline hint (also used by the config)."""
    hint = " (ImageNet EfficientNet-Lite0: imagenet-efficientnet-lite0)" if "imagenet" in value.lower() else ""
    return (
        f"pretrained '{value}': {what}, and not a built-in source ({', '.join(weights_sources)}){hint}; "
        + OFFLINE_HINT
    )


def resolve_pretrained(value: str) -> WeightsSource | Path:
    """A built-in source or an existing local file; anything else fails at once (offline)."""
    if value in weights_sources:
        return weights_sources[value]
    path = Path(value).expanduser()
    if path.is_file():
        return path
    raise RsSegError(not_found_message(value, "a directory" if path.is_dir() else "no such file"))


# --------------------------------------------------------------------------- matching


def _common_prefix(keys: list[str]) -> str:
    parts = [k.split(".") for k in keys]
    prefix: list[str] = []
    for group in zip(*(p[:-1] for p in parts)):
        if len(set(group)) != 1:
            break
        prefix.append(group[0])
    return "".join(p + "." for p in prefix)


def match_keys(source: Mapping[str, Any], target: list[str]) -> tuple[str, str]:
    """(source prefix, target prefix) under which most source keys name target keys, e.g.
    ('module.encoder.', '') or ('', 'model.') for a timm file onto SMP's ``tu-`` encoders."""
    t_prefix = _common_prefix(target) if len(target) > 1 else ""
    bare = {k.removeprefix(t_prefix) for k in target}
    votes: Counter[str] = Counter()
    for key in source:
        parts = key.split(".")
        for i in range(len(parts)):
            if ".".join(parts[i:]) in bare:
                votes["".join(p + "." for p in parts[:i])] += 1
    if not votes:
        return "", t_prefix
    return votes.most_common(1)[0][0], t_prefix


def _listing(items: list[str], limit: int = 8) -> str:
    more = f" and {len(items) - limit} more" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def load_encoder_weights(encoder: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> LoadReport:
    """Load every tensor of ``encoder`` from ``state`` or raise naming what does not fit."""
    convert = getattr(encoder, "convert_pretrained", None)
    if convert is not None:
        state = convert(dict(state))
    target = encoder.state_dict()
    s_prefix, t_prefix = match_keys(state, list(target))
    first = first_conv_key(encoder)
    report = LoadReport(source)
    mapped: dict[str, torch.Tensor] = {}
    unexpected: list[str] = []
    for key, value in state.items():
        if not key.startswith(s_prefix):
            continue  # e.g. the decoder of a whole-model checkpoint
        name = t_prefix + key.removeprefix(s_prefix)
        if name in target:
            mapped[name] = value
        elif key.removeprefix(s_prefix).split(".")[0] in HEAD_KEYS:
            report.ignored.append(key)
        else:
            unexpected.append(key)
    missing, mismatched, new_state = [], [], {}
    for name, current in target.items():
        if name not in mapped:
            if not name.endswith("num_batches_tracked"):
                missing.append(name)
            continue
        value = mapped[name]
        if value.shape != current.shape and name == first and value.ndim == 4 \
                and value.shape[:1] + value.shape[2:] == current.shape[:1] + current.shape[2:]:
            value = adapt_first_conv(value.float(), current.shape[1])
            report.adapted.append(f"{name}: {value_shape(mapped[name])} -> {value_shape(current)}")
        if value.shape != current.shape:
            mismatched.append(f"{name} (weights {value_shape(value)}, model {value_shape(current)})")
            continue
        new_state[name] = value.to(current.dtype)
        report.loaded.append(name)
    if missing or unexpected or mismatched:
        parts = [f"{len(missing)} missing keys ({_listing(missing)})" if missing else "",
                 f"{len(unexpected)} unexpected keys ({_listing(unexpected)})" if unexpected else "",
                 f"{len(mismatched)} shape mismatches ({_listing(mismatched, 4)})" if mismatched else ""]
        raise RsSegError(
            f"pretrained '{source}' does not fit the {type(encoder).__name__} encoder "
            f"({len(target)} tensors): " + "; ".join(p for p in parts if p)
        )
    # nn.Module.load_state_dict: SMP encoders override it with other signatures; checked above,
    # so only batch counters may be absent
    nn.Module.load_state_dict(encoder, new_state, strict=False)
    return report


def value_shape(t: torch.Tensor) -> str:
    return "x".join(str(d) for d in t.shape) or "scalar"


# --------------------------------------------------------------------------- build hook


def apply_pretrained(model: nn.Module, cfg: Any, source: WeightsSource | Path, load: bool = True) -> LoadReport | None:
    """Adapt ``model``'s architecture to the weights (always) and load them (``load``)."""
    encoder = encoder_of(model)
    if encoder is None:
        raise RsSegError(f"model '{cfg.name}' has no separate encoder for pretrained weights")
    if isinstance(source, WeightsSource):
        if source.prepare is not None:
            source.prepare(encoder, cfg.encoder)
        if not load:
            return None
        report = load_encoder_weights(encoder, source.state(), source.name)
    else:
        if not load:
            return None
        report = load_encoder_weights(encoder, read_weights_file(source), str(source))
    log.info("pretrained %s: %d encoder tensors loaded%s", report.source, len(report.loaded),
             f", first conv adapted ({report.adapted[0]})" if report.adapted else "")
    return report


def describe_weights_sources() -> list[dict[str, str]]:
    """Built-in sources for ``rsseg models list``: name, the model/encoder they fit, doc."""
    return [
        {"name": s.name, "fits": f"{'/'.join(s.models)} + encoder {'/'.join(s.encoders)}", "doc": s.doc}
        for s in weights_sources.values()
    ]


weights_sources: dict[str, WeightsSource] = {s.name: s for s in SOURCES}
"""Built-in, offline weights by name (a value of ``model.pretrained``)."""
