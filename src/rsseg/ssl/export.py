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
from rsseg.models.encoder_file import FORMAT
from rsseg.models.encoders import encoder_signature

log = logging.getLogger(__name__)


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
