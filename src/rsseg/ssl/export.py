"""The pretrained encoder as a file that ``model.pretrained: PATH`` loads.

The file holds exactly the encoder's state dict (``encoder_of(model).state_dict()``, its own
key names), so ``rsseg.models.pretrained`` loads every tensor into any model with the same
encoder and adapts the first convolution to another band count, as for any other weights.
Metadata says what it was pretrained as (model, encoder signature, bands, normalisation),
so a file meeting the wrong encoder or other bands can be refused with a clear message.
Formats: safetensors (metadata in the header) or .pt (``{"state_dict", "rsseg"}``).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rsseg.errors import RsSegError
from rsseg.io import atomic_path
from rsseg.models import encoder_of
from rsseg.safe_load import load_weights_only
from rsseg.ssl.features import describe_signature, encoder_signature

log = logging.getLogger(__name__)

FORMAT = "rsseg-ssl-encoder"


def export_encoder(
    model: nn.Module,
    model_cfg: Any,
    path: Path,
    *,
    in_channels: int,
    band_names: list[str] | None = None,
    mean: list[float] | None = None,
    std: list[float] | None = None,
    **info: Any,
) -> Path:
    """Write the encoder of ``model`` (built from ``model_cfg``) to ``path`` (.safetensors/.pt)."""
    encoder = encoder_of(model)
    if encoder is None:
        raise RsSegError(f"model '{model_cfg.name}' has no separate encoder to export")
    state = {k: v.detach().to("cpu").clone().contiguous() for k, v in encoder.state_dict().items()}
    meta = {
        "format": FORMAT,
        "model": model_cfg.model_dump(mode="json", exclude={"pretrained"}),
        "encoder": encoder_signature(model_cfg),
        "in_channels": in_channels,
        "band_names": band_names,
        "mean": mean,
        "std": std,
        **info,
    }
    path = Path(path)
    with atomic_path(path) as tmp:
        if path.suffix == ".safetensors":
            from safetensors.torch import save_file

            save_file(state, str(tmp), metadata={k: json.dumps(v) for k, v in meta.items()})
        elif path.suffix == ".pt":
            torch.save({"state_dict": state, "rsseg": meta}, tmp)
        else:
            raise RsSegError(f"cannot export an encoder to {path}: use .safetensors or .pt")
    return path


def read_metadata(path: Path) -> dict[str, Any] | None:
    """The metadata of an exported encoder, or None for weights from elsewhere."""
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as fh:
                raw = fh.metadata() or {}
            meta = {k: json.loads(v) for k, v in raw.items()}
        elif path.suffix == ".pt":
            obj = load_weights_only(path, "weights file")  # an unsafe or corrupt file: one line
            meta = obj.get("rsseg") if isinstance(obj, dict) else None
        else:
            return None
    except (OSError, ValueError, RuntimeError) as exc:
        raise RsSegError(f"cannot read weights file {path}: {exc}") from None
    return meta if isinstance(meta, dict) and meta.get("format") == FORMAT else None


def check_pretrained_file(path: Path, model_cfg: Any, in_channels: int, *, strict_bands: bool = True) -> None:
    """Refuse (naming the file) an exported encoder of another encoder or other bands.

    With ``strict_bands=False`` a band-count difference only logs a warning: the loader then
    adapts the first convolution (fine-tuning), which a frozen linear probe should not do.
    Files without rsseg metadata pass: the loader checks their tensors itself.
    """
    meta = read_metadata(path)
    if meta is None:
        return
    want, have = encoder_signature(model_cfg), meta.get("encoder")
    if have != want:
        raise RsSegError(
            f"{path} holds an encoder pretrained as model '{meta['model'].get('name')}' "
            f"({describe_signature(have or {})}), which does not fit model '{model_cfg.name}' "
            f"({describe_signature(want)})"
        )
    bands = meta.get("in_channels")
    if bands is not None and bands != in_channels:
        names = meta.get("band_names")
        message = (
            f"{path} was pretrained on {bands} bands"
            + (f" ({', '.join(names)})" if names else "")
            + f", but the data here has {in_channels}"
        )
        if strict_bands:
            raise RsSegError(message + ": pretrain on the same bands, or select them with data.bands")
        log.warning("%s: the first convolution is adapted", message)
