"""`rsseg models ...`: the model registry."""

from __future__ import annotations

from typing import Annotated

import typer

from rsseg.cli import _guard, app, console

models_app = typer.Typer(help="Model architectures of the registry.", no_args_is_help=True)
app.add_typer(models_app, name="models")


@models_app.command("list")
@_guard
def models_list(
    parameters: Annotated[
        bool, typer.Option("--parameters", help="Also build each model and count its parameters (slow).")
    ] = False,
    bands: Annotated[int, typer.Option(help="Input bands for --parameters.")] = 3,
    classes: Annotated[int, typer.Option(help="Classes for --parameters.")] = 7,
) -> None:
    """List the registered models, their options (model.NAME in the config) and defaults."""
    from rich.table import Table

    from rsseg.models import describe_models

    rows = describe_models(with_parameters=parameters, in_channels=bands, num_classes=classes)
    table = Table(title="models (config: model.name and its options)")
    table.add_column("name", style="bold")
    table.add_column("options (default)")
    if parameters:
        table.add_column(f"parameters ({bands} bands, {classes} classes)", justify="right")
    for row in rows:
        options = "\n".join(f"{k}: {'null' if v is None else v}" for k, v in row["options"].items()) or "-"
        cells = [row["name"], options]
        if parameters:
            cells.append(f"{row['parameters'] / 1e6:.1f}M" if "parameters" in row else "?")
        table.add_row(*cells)
    console.print(table)




@models_app.command("weights")
@_guard
def models_weights() -> None:
    """List the built-in offline pretrained weights (values of model.pretrained)."""
    from rich.table import Table

    from rsseg.models.pretrained import describe_weights_sources

    table = Table(title="built-in weights (model.pretrained: NAME); any local file works too")
    for column in ("name", "fits", "description"):
        table.add_column(column)
    for row in describe_weights_sources():
        table.add_row(row["name"], row["fits"], row["doc"])
    console.print(table)
