"""Self-supervised commands: pretrain (SimCLR on unlabelled images) and probe (linear probe)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rsseg.cli import SetOption, _guard, app, console
from rsseg.errors import RsSegError


@app.command()
@_guard
def pretrain(
    config: Annotated[Path, typer.Argument(help="YAML config: data/model/train/output plus a pretrain: section.")],
    overrides: SetOption = None,
    resume: Annotated[
        Path | None, typer.Option(help="Pretraining run directory to continue from its last checkpoint.")
    ] = None,
) -> None:
    """Self-supervised pretraining of the config's encoder; writes RUN/encoder.safetensors."""
    from rsseg.ssl import load_pretrain_config
    from rsseg.ssl import pretrain as run_pretrain

    cfg, pcfg = load_pretrain_config(config, overrides or [])
    result = run_pretrain(cfg, pcfg, config_name=config.stem, resume=resume)
    loss = "n/a" if result.loss is None else f"{result.loss:.3f}"
    console.print(f"run directory: {result.run_dir}")
    console.print(f"{result.steps} steps on {result.tiles} tiles of {result.images} images "
                  f"({result.images_with_partners} with same-ground partners), loss {loss}")
    console.print(f"encoder: {result.encoder}  (use it as model.pretrained)")


@app.command()
@_guard
def probe(
    checkpoint: Annotated[str, typer.Argument(
        help="Encoder: exported file, pretrain run directory, any weights file, built-in source, or 'none'.")],
    config: Annotated[Path, typer.Argument(help="Labelled config (its data and model sections).")],
    overrides: SetOption = None,
    stages: Annotated[str, typer.Option(help="Encoder stages: all, last, or indices like 2,3.")] = "all",
    epochs: Annotated[int, typer.Option(help="Epochs of head training.")] = 5,
    max_minutes: Annotated[float | None, typer.Option(help="Wall-clock budget of head training.")] = None,
    lr: Annotated[float, typer.Option(help="Adam learning rate of the head.")] = 5e-3,
    split: Annotated[str, typer.Option(help="Split to score.")] = "test",
    out: Annotated[Path | None, typer.Option(help="Folder for probe.json.")] = None,
) -> None:
    """Linear probe: a 1x1 head on the frozen encoder's features; prints mIoU on SPLIT."""
    from rsseg.metrics import format_metrics_table
    from rsseg.ssl import load_pretrain_config
    from rsseg.ssl import probe as run_probe

    cfg, _ = load_pretrain_config(config, overrides or [])  # a pretraining YAML works too
    try:
        chosen: str | list[int] = stages if stages in ("all", "last") else [int(s) for s in stages.split(",")]
    except ValueError:
        raise RsSegError(f"--stages takes all, last or comma-separated indices, got '{stages}'") from None
    result = run_probe(checkpoint, cfg, stages=chosen, epochs=epochs, max_minutes=max_minutes, lr=lr,
                       split=split, out=out)
    console.print(format_metrics_table(result.metrics, title=f"linear probe ({result.weights or 'random'}), {split}"))
    if result.metrics_path:
        console.print(f"probe: {result.metrics_path}")
