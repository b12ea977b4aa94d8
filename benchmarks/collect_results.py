"""Assemble docs/results.md from sweep folders written by `rsseg experiment`.

Numbers are never typed in: each section is a sweep's own results.md, preceded by the
command that reproduces it and the machine it ran on.

    python benchmarks/collect_results.py SWEEP_DIR[=COMMAND] ... --out docs/results.md
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
from pathlib import Path


def machine() -> str:
    cpu = "unknown CPU"
    info = Path("/proc/cpuinfo")
    if info.exists():
        for line in info.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweeps", nargs="+", help="SWEEP_DIR or SWEEP_DIR=COMMAND")
    parser.add_argument("--out", type=Path, default=Path("docs/results.md"))
    parser.add_argument("--note", action="append", default=[], help="A paragraph to add under the title.")
    args = parser.parse_args()
    parts = ["# Measured results", "", f"Collected {dt.date.today()} on {machine()}.", ""]
    parts += [*[f"{n}\n" for n in args.note]]
    for item in args.sweeps:
        folder, _, command = item.partition("=")
        table = Path(folder) / "results.md"
        if not table.exists():
            raise SystemExit(f"{table} not found: run the sweep first")
        lines = table.read_text().splitlines()
        title = lines[0].lstrip("# ") if lines and lines[0].startswith("#") else Path(folder).name
        parts += [f"## {title}", ""]
        if command:
            parts += ["```bash", command, "```", ""]
        parts += [*lines[1:], ""]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(parts))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
