"""Self-supervised pretraining of registry encoders on unlabelled imagery, and linear probing.

* ``pretrain(cfg, pretrain_cfg)``: SimCLR on two views per tile (``rsseg.ssl.method``), with
  positives from the same ground at another date or by another sensor (``rsseg.ssl.data``);
  the encoder is exported to ``RUN/encoder.safetensors`` for ``model.pretrained: PATH``.
* ``probe(weights, cfg)``: a linear head on the frozen encoder, mIoU on the test split.
"""

from rsseg.models import compatible_models
from rsseg.models.encoder_file import check_pretrained_file, read_metadata
from rsseg.models.encoders import encoder_features, encoder_signature
from rsseg.ssl.export import export_encoder
from rsseg.ssl.pretrain import PretrainResult, load_pretrain_config, pretrain
from rsseg.ssl.probe import ProbeResult, probe

__all__ = [
    "PretrainResult",
    "ProbeResult",
    "check_pretrained_file",
    "compatible_models",
    "encoder_features",
    "encoder_signature",
    "export_encoder",
    "load_pretrain_config",
    "pretrain",
    "probe",
    "read_metadata",
]
