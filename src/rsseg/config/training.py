"""The `loss:`, `optim:` and `train:` sections."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from rsseg.config.base import Section

LossName = Literal["ce", "focal", "dice", "jaccard", "lovasz"]


class LossTerm(Section):
    name: LossName = Field(description="Loss from the registry (`rsseg.training.losses.LOSSES`).")
    weight: float = Field(1.0, gt=0, description="Factor of this loss in the weighted sum.")


class LossConfig(Section):
    name: LossName = Field(
        "ce", description="Loss from the registry (`rsseg.training.losses.LOSSES`); unused when `terms` is set."
    )
    terms: list[LossTerm] | None = Field(
        None,
        min_length=1,
        description="Weighted sum of losses instead of `name`, e.g. [{name: ce}, {name: dice, weight: 0.5}].",
    )
    class_weights: Literal["inverse", "median"] | list[float] | None = Field(
        None,
        description="Per-class ce/focal weights: a list, inverse (N/(2 N_c), seed 000), median (median freq.), null = none.",
    )
    class_weight_power: float = Field(
        1.0,
        gt=0.0,
        le=1.0,
        description="Exponent on inverse/median weights: w_c ** p; 0.5 = square-root weights, softer on rare classes.",
    )
    class_weight_final_power: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="Exponent at the end of the run, reached linearly from class_weight_power as the LR "
        "schedule progresses (0 = weights faded to 1: rare classes learned early, common ones regain "
        "accuracy late); null = class_weight_power throughout.",
    )
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0, description="Cross-entropy label smoothing.")
    gamma: float = Field(2.0, ge=0.0, description="Focal exponent: (1 - p_t)^gamma down-weights easy pixels.")
    alpha: float | None = Field(
        None, gt=0.0, description="Focal constant factor alpha (Lin et al.); null = 1. Per class: class_weights."
    )
    smooth: float = Field(0.0, ge=0.0, description="Dice/Jaccard smoothing added to numerator and denominator.")

    @model_validator(mode="after")
    def _check(self) -> LossConfig:
        if self.terms is not None and self.name != "ce":
            raise ValueError("give either `name` or `terms`, not both (leave `name` unset with `terms`)")
        names = {t.name for t in self.terms} if self.terms is not None else {self.name}
        if self.class_weights is not None and not names & {"ce", "focal"}:
            raise ValueError("`class_weights` apply to ce and focal only, and no such loss is used")
        if self.class_weight_power != 1.0 and not isinstance(self.class_weights, str):
            raise ValueError("`class_weight_power` applies to class_weights: inverse | median only")
        if self.class_weight_final_power is not None and not isinstance(self.class_weights, str):
            raise ValueError("`class_weight_final_power` applies to class_weights: inverse | median only "
                             "(set loss.class_weight_final_power=null with other weights)")
        weights = self.class_weights
        if isinstance(weights, list) and (min(weights, default=0.0) < 0 or sum(weights) <= 0):
            raise ValueError("`class_weights` must be >= 0 with at least one positive")
        return self


#: Seed optimisation presets (seed 000 §4: SGD1 and ADAM1). Keys the user sets win.
OPTIM_PRESETS: dict[str, dict[str, Any]] = {
    # SGD lr 0.006, momentum 0.9, wd 1e-5, PolynomialLR over 20 epochs (power 1, torch's default)
    "sgd1": {"name": "sgd", "lr": 0.006, "momentum": 0.9, "weight_decay": 1e-5,
             "scheduler": "poly", "power": 1.0, "interval": "epoch", "total_iters": 20},
    # Adam lr 0.005, PolynomialLR with power 2 stepped per epoch over the whole run
    "adam1": {"name": "adam", "lr": 0.005, "weight_decay": 0.0,
              "scheduler": "poly", "power": 2.0, "interval": "epoch", "total_iters": None},
    # seed 001: LR x0.1 every 15 epochs
    "step15": {"scheduler": "step", "step_size": 15, "gamma": 0.1},
}


class OptimConfig(Section):
    preset: Literal["sgd1", "adam1", "step15"] | None = Field(
        None,
        description="Seed preset filling the keys you leave out: sgd1, adam1 (seed 000), step15 (seed 001).",
    )
    name: Literal["sgd", "adam", "adamw"] = Field("adam", description="Optimiser.")
    lr: float = Field(0.003, gt=0, description="Initial learning rate.")
    momentum: float = Field(0.9, ge=0, description="SGD momentum.")
    weight_decay: float = Field(1e-5, ge=0, description="Weight decay.")
    encoder_lr_scale: float = Field(
        1.0, gt=0, le=1,
        description="The encoder's LR as a share of `lr` (e.g. 0.1: a pretrained encoder moves ten times "
        "slower than the new decoder and head; every schedule keeps the ratio); 1 = one LR for all.",
    )
    scheduler: Literal["poly", "cosine", "constant", "wsd", "onecycle", "step", "none"] = Field(
        "poly",
        description="LR schedule: poly(nomial) or cosine decay to zero, constant, wsd (constant, then linear "
        "to zero over the last decay_fraction), onecycle (up from lr/25 to lr over the first 30 %, then "
        "cosine to zero: its own warm-up), step decay, or none.",
    )
    power: float = Field(0.9, gt=0, description="Power of the polynomial schedule (seed ADAM1: 2).")
    interval: Literal["step", "epoch", "time"] = Field(
        "step",
        description="Run progress of poly/cosine/constant/wsd: per optimiser step (smooth), per epoch (seed), "
        "or over the wall-clock budget train.max_minutes (time: reaches the end when the budget ends).",
    )
    total_iters: int | None = Field(
        None, ge=1, description="Schedule length in steps/epochs (per `interval`); null = whole run."
    )
    warmup: float = Field(
        0.0, ge=0, lt=1,
        description="Linear warm-up from 0 over this fraction of the run (poly/cosine/constant/wsd); 0 = none.",
    )
    decay_fraction: float = Field(
        0.2, gt=0, le=1, description="wsd: the final fraction of the run over which the LR falls to zero."
    )
    step_size: int = Field(15, ge=1, description="Epochs between step-LR decays (seed 001: 15).")
    gamma: float = Field(0.1, gt=0, description="Step-LR decay factor.")

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, value: Any) -> Any:
        if isinstance(value, dict) and value.get("preset") in OPTIM_PRESETS:
            return {**OPTIM_PRESETS[value["preset"]], **value}
        return value

    @model_validator(mode="after")
    def _warmup_needs_a_progress_schedule(self) -> OptimConfig:
        if self.warmup > 0 and self.scheduler in ("step", "none", "onecycle"):
            raise ValueError(f"warmup applies to poly, cosine, constant and wsd, not scheduler '{self.scheduler}'"
                             + (" (onecycle has its own warm-up: set optim.warmup=0)"
                                if self.scheduler == "onecycle" else ""))
        return self


class EarlyStoppingConfig(Section):
    patience: int = Field(5, ge=1, description="Validation epochs without improvement before stopping.")
    min_delta: float = Field(0.0, ge=0, description="Smallest val mIoU gain that counts as improvement.")


class TrainConfig(Section):
    epochs: int = Field(10, ge=1, description="Maximum number of epochs.")
    max_minutes: float | None = Field(
        None, gt=0, description="Stop training after this wall-clock budget (checkpoints kept)."
    )
    seed: int = Field(0, description="Seed for weights, sampling and augmentation.")
    deterministic: bool = Field(
        True, description="Use deterministic algorithms (reproducible runs); torch's NaN fill of new memory "
        "stays off while fitting: it costs speed, not reproducibility.")
    precision: Literal["auto", "bf16", "32"] = Field(
        "auto",
        description="bf16 autocast or fp32; auto = bf16 only where the hardware runs it natively.",
    )
    channels_last: Literal["auto", "on", "off"] = Field(
        "auto", description="channels_last memory format; auto = on for CPUs and with bf16."
    )
    accelerator: str = Field("auto", description="Lightning accelerator: auto, cpu, gpu.")
    devices: int | str = Field(
        "auto",
        description="Processes per node (Lightning devices): a number, 'auto', or GPU ids as '0,1'. "
        "data.batch_size is per process: the global batch is batch_size x devices x num_nodes.",
    )
    num_nodes: int = Field(1, ge=1, description="Machines of a multi-node run (SLURM: --nodes).")
    strategy: str = Field(
        "auto",
        description="Lightning strategy: auto (ddp for several devices), ddp, ddp_spawn, ...; checked "
        "against Lightning's registry before any work.",
    )
    threads: int | None = Field(None, ge=1, description="torch CPU threads; null = library default.")
    limit_train_batches: int | float | None = Field(
        None, description="Batches per epoch (int) or fraction (float); null = all."
    )
    log_every_n_steps: int = Field(10, ge=1, description="Logging interval in steps.")
    val_every: int = Field(
        1, ge=1,
        description="Validate every N epochs: small epochs (an EBB subset) otherwise spend much of the "
        "budget validating. Early-stopping patience counts validations.",
    )
    early_stopping: EarlyStoppingConfig | None = Field(
        None, description="Stop when validation mIoU stops improving, e.g. {patience: 5}; null = off."
    )
    ema: float | None = Field(
        None, gt=0, lt=1,
        description="Exponential moving average of the weights with this decay (e.g. 0.999): validation "
        "scores it and the checkpoints hold it; null = off.",
    )
    swa: float | None = Field(
        None, gt=0, le=1,
        description="Stochastic weight averaging: the equal average of the weights after every optimiser step "
        "over this final share of the run (e.g. 0.25), on the LR schedule's clock; validation scores it and "
        "the checkpoints hold it (before the window opens they hold the weights themselves); null = off.",
    )
    accumulate_grad_batches: int = Field(
        1, ge=1,
        description="Batches whose gradients add up before each optimiser step: a step sees "
        "batch_size x this many tiles at the memory of one batch (fewer, larger steps).",
    )
    select: Literal["best", "last"] = Field(
        "best",
        description="The run's model: best (checkpoints/best.ckpt, best validation mIoU) or last (the final "
        "weights, last.ckpt); what `rsseg demo`/`experiment` evaluate.",
    )
    freeze_encoder: bool | int = Field(
        False,
        description="Freeze the encoder: true (whole run), false, or N (first N epochs, then fine-tune).",
    )

    @model_validator(mode="after")
    def _one_weight_average(self) -> TrainConfig:
        if self.ema is not None and self.swa is not None:
            raise ValueError("train.ema and train.swa each average the weights: set one of them to null")
        return self

    @field_validator("freeze_encoder")
    @classmethod
    def _freeze_non_negative(cls, value: bool | int) -> bool | int:
        if not isinstance(value, bool) and value < 0:
            raise ValueError("freeze_encoder takes true, false or a number of epochs >= 0")
        return value

    @field_validator("devices")
    @classmethod
    def _devices_positive(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 1 and value != -1:
            raise ValueError("devices takes a number >= 1, -1 (all), 'auto' or GPU ids such as '0,1'")
        return value

    @field_validator("precision", mode="before")
    @classmethod
    def _precision_from_yaml(cls, value: Any) -> Any:
        """YAML reads ``precision: 32`` as a number: take it as the string it means."""
        return "32" if isinstance(value, int) and not isinstance(value, bool) and value == 32 else value

    @field_validator("channels_last", mode="before")
    @classmethod
    def _switch_from_yaml(cls, value: Any) -> Any:
        """YAML 1.1 reads ``on``/``off`` (and ``yes``/``no``) as booleans: take them back."""
        return {True: "on", False: "off"}.get(value, value) if isinstance(value, bool) else value
