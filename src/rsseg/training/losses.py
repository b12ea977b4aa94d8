"""Loss registry: ``build_loss(cfg.loss, num_classes, class_counts)`` gives one ``nn.Module``.

Every loss takes float logits ``(B, K, H, W)`` and int64 targets ``(B, H, W)`` and returns a
scalar. Pixels whose target is ``IGNORE_INDEX`` contribute nothing to the value or the
gradient, and a batch with no labelled pixel gives exactly 0 (not NaN), so a chip of pure
"no data" can never poison training. The ignore handling is done with masks, not boolean
indexing, so ce/focal/dice/jaccard never synchronise with the GPU.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rsseg.classes import IGNORE_INDEX
from rsseg.data.balance import class_weights
from rsseg.errors import RsSegError

#: ``builder(cfg, class_weights) -> module``; ``class_weights`` is None or a (K,) tensor.
LossBuilder = Callable[[Any, "torch.Tensor | None"], nn.Module]


def class_weights_from_counts(
    counts: Sequence[int] | np.ndarray, mode: str, power: float = 1.0
) -> torch.Tensor:
    """Per-class weights from training pixel counts ``N_c``; classes with ``N_c = 0`` get 0.

    Only classes with ``N_c > 0`` count (zero the counts of ignored classes first). With
    ``N = sum_c N_c`` (``rsseg.data.balance.class_weights`` holds the formulas):

    - ``inverse``: ``w_c = N / (2 N_c)``, seed 000 §5.3.3's inverse frequency. The constant
      only scales every weight, and ce/focal divide by the summed pixel weights, so the
      loss value does not depend on it;
    - ``median``: median frequency balancing (seeds 003/004, Eigen & Fergus 2015),
      ``w_c = median(f) / f_c`` with ``f_c = N_c / N`` over the counted classes (frequencies
      over all training pixels, not only over images containing ``c``; an even number of
      classes takes the mean of the two middle frequencies).

    ``power`` raises every weight to ``p`` (``loss.class_weight_power``): 0.5 gives square-root
    weights, which still lift rare classes but trade less of the common ones for them.
    """
    return torch.tensor(class_weights(counts, mode) ** power, dtype=torch.float32)


def _resolve_class_weights(
    spec: Any, num_classes: int, class_counts: Sequence[int] | np.ndarray | None, power: float = 1.0
) -> torch.Tensor | None:
    if spec is None:
        return None
    if isinstance(spec, str):
        if class_counts is None:
            raise RsSegError(
                f"loss.class_weights: {spec} needs the class pixel counts of the training masks"
            )
        if len(class_counts) != num_classes:
            raise RsSegError(f"got {len(class_counts)} class pixel counts for {num_classes} classes")
        return class_weights_from_counts(class_counts, spec, power)
    if len(spec) != num_classes:
        raise RsSegError(f"loss.class_weights has {len(spec)} values for {num_classes} classes")
    return torch.tensor(list(spec), dtype=torch.float32)


def _labelled(
    target: torch.Tensor, weight: torch.Tensor | None, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """(target with ignored pixels set to class 0, per-pixel weight: 0 where ignored)."""
    valid = target != IGNORE_INDEX
    safe = target.masked_fill(~valid, 0)
    w = valid.to(dtype) if weight is None else weight.to(dtype)[safe] * valid
    return safe, w


def _safe_div(total: torch.Tensor, denom: torch.Tensor) -> torch.Tensor:
    """``total / denom``, and 0 when nothing was labelled (``denom == 0`` implies total 0)."""
    return total / torch.where(denom > 0, denom, torch.ones_like(denom))


class CrossEntropy(nn.Module):
    """Weighted CE, mean over labelled pixels (normalised by their weights, as PyTorch does).

    Unlike ``nn.CrossEntropyLoss`` it returns 0, not NaN, when every pixel is ignored.
    """

    def __init__(self, weight: torch.Tensor | None = None, label_smoothing: float = 0.0) -> None:
        super().__init__()
        # not persistent: weights come from the config, checkpoints stay loadable either way
        self.register_buffer("weight", weight, persistent=False)
        self.label_smoothing = label_smoothing

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        weight = None if self.weight is None else self.weight.to(logits.dtype)
        per_pixel = F.cross_entropy(
            logits, target, weight=weight, ignore_index=IGNORE_INDEX,
            reduction="none", label_smoothing=self.label_smoothing,
        )
        _, w = _labelled(target, weight, logits.dtype)
        return _safe_div(per_pixel.sum(), w.sum())


class FocalLoss(nn.Module):
    """Softmax focal loss (Lin et al. 2017): ``-alpha * w_t * (1 - p_t)^gamma * log p_t``.

    Normalised like weighted CE, so ``gamma=0`` without ``alpha`` is exactly CE. Written here
    because SMP's multiclass focal is one-vs-rest sigmoid and gives NaN on all-ignored batches.
    """

    def __init__(self, gamma: float = 2.0, alpha: float | None = None,
                 weight: torch.Tensor | None = None) -> None:
        super().__init__()
        self.gamma = gamma
        self.alpha = 1.0 if alpha is None else alpha
        self.register_buffer("weight", weight, persistent=False)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        safe, w = _labelled(target, self.weight, logits.dtype)
        logpt = logits.log_softmax(1).gather(1, safe.unsqueeze(1)).squeeze(1)
        # 1 - p_t via expm1 (exact for confident pixels); the clamp keeps d/dp finite for gamma < 1
        focal = (-torch.expm1(logpt)).clamp_min(1e-12).pow(self.gamma)
        return -self.alpha * _safe_div((w * focal * logpt).sum(), w.sum())


class SoftOverlapLoss(nn.Module):
    """Soft Dice or Jaccard (IoU) loss over the whole batch, ``1 - score`` averaged over the
    classes present in the labelled target.

    Written here rather than SMP's: SMP averages over all K classes with absent ones counted
    as 0, so the loss (and its gradient) shrinks whenever a batch lacks some classes.
    """

    def __init__(self, kind: str, smooth: float = 0.0) -> None:
        super().__init__()
        if kind not in ("dice", "jaccard"):
            raise ValueError(kind)
        self.kind, self.smooth = kind, smooth

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        safe, w = _labelled(target, None, logits.dtype)
        valid = w.unsqueeze(1)
        probs = logits.softmax(1) * valid
        classes = torch.arange(logits.shape[1], device=logits.device).view(1, -1, 1, 1)
        onehot = (safe.unsqueeze(1) == classes).to(probs.dtype) * valid
        dims = (0, 2, 3)
        inter, p_sum, t_sum = (probs * onehot).sum(dims), probs.sum(dims), onehot.sum(dims)
        if self.kind == "dice":
            num, den = 2 * inter, p_sum + t_sum
        else:
            num, den = inter, p_sum + t_sum - inter
        score = (num + self.smooth) / (den + self.smooth).clamp_min(1e-7)
        present = (t_sum > 0).to(score.dtype)
        return ((1 - score) * present).sum() / present.sum().clamp_min(1)


class LovaszSoftmax(nn.Module):
    """Lovasz-Softmax (Berman et al. 2018), SMP's implementation over the batch and the
    classes present; SMP drops ignored pixels itself but returns an empty tensor instead of
    0 when none is left, so that case is handled here. Computed in float32 (SMP's only dtype).
    """

    def __init__(self) -> None:
        super().__init__()
        from segmentation_models_pytorch.losses import LovaszLoss  # slow import: only when used

        self.inner = LovaszLoss("multiclass", per_image=False, ignore_index=IGNORE_INDEX)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if not (target != IGNORE_INDEX).any():
            return logits.sum() * 0.0
        return self.inner(logits.float(), target)


class WeightedSum(nn.Module):
    """``sum_i weight_i * loss_i(logits, target)``."""

    def __init__(self, terms: Sequence[tuple[float, nn.Module]]) -> None:
        super().__init__()
        self.weights = [float(w) for w, _ in terms]
        self.losses = nn.ModuleList(m for _, m in terms)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return sum(w * loss(logits, target) for w, loss in zip(self.weights, self.losses))


LOSSES: dict[str, LossBuilder] = {
    "ce": lambda cfg, w: CrossEntropy(w, cfg.label_smoothing),
    "focal": lambda cfg, w: FocalLoss(cfg.gamma, cfg.alpha, w),
    "dice": lambda cfg, w: SoftOverlapLoss("dice", cfg.smooth),
    "jaccard": lambda cfg, w: SoftOverlapLoss("jaccard", cfg.smooth),
    "lovasz": lambda cfg, w: LovaszSoftmax(),
}


class ClassWeightFade:
    """Moves the class weights of a built loss from ``w ** start`` to ``w ** end`` as the run
    progresses (``loss.class_weight_final_power``).

    Why: computed weights make a rare class learned early in a short run, but a long run
    learns it anyway, and constant weights then keep trading the common classes' accuracy
    for it; fading them gives the early lift and the late calibration. Classes weighted 0
    (absent from training) stay 0 at every power.
    """

    def __init__(self, loss: nn.Module, raw: torch.Tensor, start: float, end: float) -> None:
        self.raw, self.start, self.end = raw, start, end
        self.targets = [m for m in loss.modules()
                        if isinstance(m, (CrossEntropy, FocalLoss)) and m.weight is not None]

    def power(self, progress: float) -> float:
        p = min(max(progress, 0.0), 1.0)
        return self.start + (self.end - self.start) * p

    def update(self, progress: float) -> float:
        """Set the weights for ``progress`` in [0, 1]; returns the power used."""
        power = self.power(progress)
        weight = torch.where(self.raw > 0, self.raw ** power, torch.zeros_like(self.raw))
        for module in self.targets:
            module.weight.copy_(weight)
        return power


def class_weight_fade(
    cfg: Any, loss: nn.Module, class_counts: Sequence[int] | np.ndarray | None
) -> ClassWeightFade | None:
    """The fade of ``loss``'s computed weights that ``cfg`` (a ``LossConfig``) asks for, or None."""
    if getattr(cfg, "class_weight_final_power", None) is None or not isinstance(cfg.class_weights, str):
        return None
    raw = _resolve_class_weights(cfg.class_weights, len(class_counts), class_counts)
    return ClassWeightFade(loss, raw, cfg.class_weight_power, cfg.class_weight_final_power)


def build_loss(
    cfg: Any, num_classes: int, class_counts: Sequence[int] | np.ndarray | None = None
) -> nn.Module:
    """The loss of ``cfg`` (a ``LossConfig``): one registry loss, or ``WeightedSum`` of ``terms``.

    ``class_counts`` (training pixels per class, e.g. ``rsseg.data.priors.class_pixel_counts``)
    is needed only for ``class_weights: inverse | median``.
    """
    weight = _resolve_class_weights(
        cfg.class_weights, num_classes, class_counts, cfg.class_weight_power
    )
    terms = [(t.name, t.weight) for t in cfg.terms] if cfg.terms else [(cfg.name, 1.0)]
    built = []
    for name, factor in terms:
        try:
            builder = LOSSES[name]
        except KeyError:
            raise RsSegError(f"unknown loss '{name}'; available: {', '.join(LOSSES)}") from None
        built.append((factor, builder(cfg, weight)))
    if len(built) == 1 and built[0][0] == 1.0:
        return built[0][1]
    return WeightedSum(built)
