"""An rsseg-exported encoder file (``rsseg.ssl.export``) read back: its metadata, and whether it
fits the model and bands it is loaded into. In ``models`` because ``build_model`` checks it."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from rsseg.errors import RsSegError
from rsseg.models.encoders import describe_signature, encoder_signature
from rsseg.safe_load import load_weights_only

log = logging.getLogger(__name__)

FORMAT = "rsseg-ssl-encoder"


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
