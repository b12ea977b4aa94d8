"""`rsseg data ...`: check, describe and balance a dataset (a config's data section) before training.

Exit codes of ``data check``: 0 = no problem in a scene training would use, 1 = problems found
(scenes already excluded by ``data.exclude`` do not count), 2 = usage or config error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from rsseg.cli import SetOption, _guard, app, console

data_app = typer.Typer(help="Check, describe and balance a dataset before training.", no_args_is_help=True)
app.add_typer(data_app, name="data")

ConfigArg = Annotated[Path, typer.Argument(help="YAML config file (its data section is used).")]
ProgressOption = Annotated[bool, typer.Option("--progress/--no-progress", help="Show a progress bar.")]
EXIT_PROBLEMS = 1
MAX_ROWS = 200


def _short(path: str, root: str) -> str:
    return path.removeprefix(root.rstrip("/") + "/") if path else ""


@data_app.command("check")
@_guard
def data_check(
    config: ConfigArg,
    overrides: SetOption = None,
    out: Annotated[Path, typer.Option(help="JSON report to write.")] = Path("data-check.json"),
    write_exclusions: Annotated[
        Path | None,
        typer.Option(help="Write the scenes with errors (plus the current data.exclude entries) as a JSON "
                          "list usable as data.exclude."),
    ] = None,
    progress: ProgressOption = True,
) -> None:
    """Read every pixel of every scene and report bad files. Exit 0: clean; 1: problems; 2: usage error."""
    from rsseg.config import load_config
    from rsseg.data.check import check_data, write_report
    from rsseg.data.check import write_exclusions as write_list

    cfg = load_config(config, overrides or [])
    report = check_data(cfg.data, progress=progress)
    if report.problems:
        table = Table(title=f"data check: {report.dataset} ({len(report.scenes)} scenes)")
        for column in ("scene", "kind", "severity", "file", "detail"):
            table.add_column(column, overflow="fold")
        for p in report.problems[:MAX_ROWS]:
            excluded = " (excluded)" if p.scene in report.excluded else ""
            style = "red" if p.severity == "error" and not excluded else None
            table.add_row(p.scene + excluded, p.kind, p.severity, _short(p.path, report.root),
                          p.detail.replace(p.path, _short(p.path, report.root)), style=style)
        console.print(table)
        if len(report.problems) > MAX_ROWS:
            console.print(f"... {len(report.problems) - MAX_ROWS} more rows in {out}")
    console.print(f"report: {write_report(report, out)}")
    if write_exclusions is not None:
        entries = write_list(report, write_exclusions, cfg.data.exclude)
        console.print(f"exclusion list: {write_exclusions} ({len(entries)} entries; set data.exclude to it)")
    errors = [p for p in report.errors if p.scene not in report.excluded]
    notes = len(report.problems) - len(report.errors)
    if errors:
        console.print(f"[red]{len(errors)} problem(s) in {len({p.scene or p.path for p in errors})} scene(s)[/], "
                      f"{notes} note(s)")
        raise typer.Exit(code=EXIT_PROBLEMS)
    console.print(f"[green]clean[/]: {len(report.scenes)} scenes, {notes} note(s)")


@data_app.command("stats")
@_guard
def data_stats(
    config: ConfigArg,
    overrides: SetOption = None,
    out: Annotated[Path, typer.Option(help="Folder for stats.json and the prior plots.")] = Path("data-stats"),
    progress: ProgressOption = True,
) -> None:
    """Class priors per split (with and without ignored classes) and per-band statistics."""
    from rsseg.config import load_config
    from rsseg.data.stats import data_stats as compute
    from rsseg.data.stats import write_stats

    cfg = load_config(config, overrides or [])
    result = compute(cfg.data, progress=progress)
    for group, priors in result["priors"].items():
        if not priors["scenes"]:
            continue
        table = Table(title=f"class priors: {group} ({priors['scenes']} scenes, {priors['no_label']} px no label)")
        for column in ("class", "pixels", "share", "share w/o ignored"):
            table.add_column(column, justify="left" if column == "class" else "right")
        for row in priors["classes"]:
            counted = "ignored" if row["share_counted"] is None else f"{100 * row['share_counted']:.2f} %"
            table.add_row(row["class"], f"{row['pixels']:,}", f"{100 * row['share']:.2f} %", counted)
        console.print(table)
    table = Table(title="bands (all scenes; valid pixels: not NaN, not the declared nodata)")
    for column in ("band", "mean", "std", "min", "max", "nodata", "zero"):
        table.add_column(column, justify="left" if column == "band" else "right")
    for band in result["bands"]["all"]:
        def num(v):
            return "-" if v is None else f"{v:.4g}"
        table.add_row(band["name"], num(band["mean"]), num(band["std"]), num(band["min"]), num(band["max"]),
                      f"{100 * band['nodata_share']:.2f} %", f"{100 * band['zero_share']:.2f} %")
    console.print(table)
    for item in result["left_out"]:
        console.print(f"[yellow]left out[/] {item['scene']}: {item['problem']}")
    paths = write_stats(result, out)
    console.print("written: " + ", ".join(str(p) for p in paths))


@data_app.command("balance")
@_guard
def data_balance(
    config: ConfigArg,
    size: Annotated[int, typer.Option(help="Number of tiles to select.")],
    granularity: Annotated[
        int | None, typer.Option(help="Tile side G in pixels (default: data.tile_size; seed 000: 512).")
    ] = None,
    step: Annotated[int, typer.Option(help="Tiles taken per score evaluation (1 = Algorithm 1).")] = 1,
    objective: Annotated[str, typer.Option(help="max (balanced subset) or min (the listing literally).")] = "max",
    out: Annotated[Path, typer.Option(help="Tile list (JSON, usable as data.subset); the plot goes beside it.")]
    = Path("balance.json"),
    overrides: SetOption = None,
    progress: ProgressOption = True,
) -> None:
    """Entropy-Based Balancing of the training split: a tile subset with balanced class priors."""
    from rsseg.config import load_config
    from rsseg.data.subset import balance_subset, write_balance

    cfg = load_config(config, overrides or [])
    result = balance_subset(cfg.data, size, granularity, step, objective, progress=progress)
    json_path, png = write_balance(result, out)
    console.print(
        f"selected {result['selected']} of {result['tiles_total']} tiles of {result['granularity']} px; "
        f"class entropy {result['entropy_before']:.3f} -> {result['entropy_after']:.3f} nats"
    )
    console.print(f"tile list: {json_path} (set data.subset to it)\nprior plot: {png}")
