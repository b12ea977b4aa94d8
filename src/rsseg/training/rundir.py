"""A run directory (``config.yaml``, ``checkpoints/``, ``logs/``): shared by ``train`` and
``rsseg.ssl.pretrain``, which keep one per run, resumable, with one metrics history."""

from __future__ import annotations

import csv
import datetime as dt
import logging
import shutil
from pathlib import Path

from rsseg.config import Config
from rsseg.errors import RsSegError
from rsseg.io import atomic_path, ensure_writable_dir
from rsseg.safe_load import read_lightning_checkpoint


def new_run_dir(cfg: Config, config_name: str) -> Path:
    name = cfg.output.name or f"{config_name}-{dt.datetime.now():%Y%m%d-%H%M%S}"
    run_dir = Path(cfg.output.dir) / name
    if (run_dir / "checkpoints").exists():
        raise RsSegError(
            f"run directory {run_dir} already holds checkpoints: pass --resume {run_dir} to "
            "continue it, or choose another output.name"
        )
    return ensure_writable_dir(run_dir)


def resume_point(resume: Path | str) -> tuple[Path, Path, dict]:
    """The run directory, its ``checkpoints/last.ckpt`` and that checkpoint read weights-only:
    before Lightning (or a new config.yaml) touches the run, a missing or bad file is one line."""
    run_dir = Path(resume)
    ckpt_path = run_dir / "checkpoints" / "last.ckpt"
    if not ckpt_path.exists():
        raise RsSegError(f"cannot resume: {ckpt_path} not found")
    return run_dir, ckpt_path, read_lightning_checkpoint(ckpt_path)


def quiet_lightning() -> None:
    """Silence Lightning's banner and tips unless ``--debug`` turned INFO logging on."""
    if logging.getLogger().isEnabledFor(logging.INFO):
        return
    for name in list(logging.root.manager.loggerDict):
        if name.startswith("lightning"):
            logging.getLogger(name).setLevel(logging.WARNING)


def preserve_csv_log(run_dir: Path) -> Path | None:
    """Lightning's CSVLogger deletes an existing metrics.csv; keep a copy to merge back."""
    current = run_dir / "logs" / "metrics.csv"
    if not current.exists():
        return None
    backup = current.with_name("metrics.before-resume.csv")
    if not backup.exists():  # a crash during an earlier resume already left the full history here
        shutil.copy2(current, backup)
    return backup


def merge_csv_log(run_dir: Path, history: Path) -> None:
    """Write the pre-resume rows followed by the new ones into logs/metrics.csv."""
    current = run_dir / "logs" / "metrics.csv"
    frames = [list(csv.DictReader(p.open(newline=""))) for p in (history, current) if p.exists()]
    rows = [row for frame in frames for row in frame]
    keys = sorted({k for row in rows for k in row})
    with atomic_path(current) as tmp, tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
    history.unlink()
