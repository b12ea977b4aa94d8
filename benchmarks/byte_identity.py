"""Do two source trees produce the same files? For refactors that must not change behaviour.

Each tree (a folder holding ``src/rsseg``, or a git revision, checked out with ``git worktree``)
runs in turn, through the CLI and with the same absolute paths: it trains the tiny test config
(fixed seed, 1 thread), predicts the test scene in the reference, fast, whole and naive modes,
builds a retrieval index and explains the scene. Then every output file is compared byte by
byte; JSON files also after dropping timing and date keys, checkpoints also by their tensors
(a checkpoint pickles Lightning's state, whose bytes may differ with equal weights).
    .venv/bin/python benchmarks/byte_identity.py 31a0ff4 HEAD
    .venv/bin/python benchmarks/byte_identity.py /work/main /work/wt-layering
Exit status 1 when an output differs.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CONFIG = """\
data:
  root: {work}/data
  synthetic: {{train: 2, val: 1, test: 1, size: 192, seed: 3}}
  tile_size: 96
  batch_size: 4
model: {{base_width: 4, depth: 2}}
train: {{epochs: 2, threads: 1, seed: 7}}
output: {{dir: {work}/runs, name: tiny}}
"""
#: keys whose values are wall-clock times or dates
VOLATILE = re.compile(r"(^|_)(time|times|timings|seconds|secs|date|created|started|finished|elapsed|duration|"
                      r"mpix_s|per_s|wall|when|timestamp|datetime)($|_)|seconds|_s$", re.I)
SKIP = re.compile(r"events\.out\.tfevents|\.lock$|timings\.json$|report\.html$")


def checkout(spec: str, scratch: Path) -> Path:
    """A folder with ``src/rsseg`` for ``spec``: a path as is, else a git revision's worktree."""
    path = Path(spec)
    if (path / "src" / "rsseg").is_dir():
        return path.resolve()
    repo = Path(__file__).resolve().parents[1]
    dest = scratch / f"tree-{re.sub(r'[^A-Za-z0-9]+', '-', spec)}"
    subprocess.run(["git", "-C", str(repo), "worktree", "add", "--detach", str(dest), spec],
                   check=True, capture_output=True)
    return dest


def run_tree(tree: Path, work: Path, rsseg: list[str], threads: int) -> None:
    """All stages of one tree, in ``work`` (the same path for every tree)."""
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    (work / "tiny.yaml").write_text(CONFIG.format(work=work))
    env = {**os.environ, "PYTHONPATH": str(tree / "src"), "RSSEG_CACHE_DIR": str(work / "cache"),
           "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": str(threads), "PYTHONHASHSEED": "0"}

    def cli(*args: str) -> None:
        print("  rsseg", " ".join(args), flush=True)
        done = subprocess.run([*rsseg, *args], env=env, cwd=work, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"{tree}: rsseg {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-3000:]}")

    cli("train", "tiny.yaml")
    ckpt = work / "runs" / "tiny" / "checkpoints" / "best.ckpt"
    scene = sorted((work / "data" / "test" / "images").glob("*.tif"))[0]
    for mode in ("reference", "fast", "whole", "naive"):
        cli("predict", str(ckpt), str(scene), "--out", f"pred-{mode}", "--mode", mode,
            "--threads", str(threads), "--probabilities")
    cli("index", "build", str(ckpt), str(scene), "--out", "index", "--tile", "64")
    cli("explain", str(ckpt), str(scene), "--out", "explain")


def _strip(obj):
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items() if not VOLATILE.search(str(k))}
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    return obj


def same_checkpoint(a: Path, b: Path) -> bool:
    import torch

    sa = torch.load(a, map_location="cpu", weights_only=False)["state_dict"]
    sb = torch.load(b, map_location="cpu", weights_only=False)["state_dict"]
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def compare(a: Path, b: Path) -> tuple[list[str], list[str]]:
    """(lines describing each file, files that differ)."""
    files_a = {p.relative_to(a) for p in a.rglob("*") if p.is_file()}
    files_b = {p.relative_to(b) for p in b.rglob("*") if p.is_file()}
    lines, bad = [], []
    for rel in sorted(files_a | files_b):
        name = str(rel)
        if rel.parts[0] in ("cache", "data") or SKIP.search(name):
            continue
        if rel not in files_a or rel not in files_b:
            lines.append(f"ONLY IN {'first' if rel in files_a else 'second'}  {name}")
            bad.append(name)
            continue
        fa, fb = a / rel, b / rel
        if filecmp.cmp(fa, fb, shallow=False):
            lines.append(f"identical          {name}")
        elif rel.suffix == ".json" and _strip(json.loads(fa.read_text())) == _strip(json.loads(fb.read_text())):
            lines.append(f"same but times     {name}")
        elif rel.suffix == ".ckpt" and same_checkpoint(fa, fb):
            lines.append(f"same tensors       {name}")
        elif rel.suffix == ".csv" and rel.name == "metrics.csv" and _csv_no_time(fa) == _csv_no_time(fb):
            lines.append(f"same but times     {name}")
        else:
            lines.append(f"DIFFERENT          {name}")
            bad.append(name)
    return lines, bad


def _csv_no_time(path: Path) -> list[list[str]]:
    import csv

    rows = list(csv.reader(path.open(newline="")))
    if not rows:
        return rows
    keep = [i for i, h in enumerate(rows[0]) if not VOLATILE.search(h)]
    return [[r[i] if i < len(r) else "" for i in keep] for r in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("first", help="folder with src/rsseg, or a git revision")
    parser.add_argument("second", help="folder with src/rsseg, or a git revision")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--reuse-first", action="store_true",
                        help="keep the first tree's outputs from an earlier run in --work")
    parser.add_argument("--rsseg", default=str(Path(sys.executable).with_name("rsseg")),
                        help="the rsseg console script of the environment to run both trees in")
    args = parser.parse_args()
    scratch = args.work or Path(tempfile.mkdtemp(prefix="rsseg-byte-identity-"))
    scratch.mkdir(parents=True, exist_ok=True)
    work = scratch / "work"
    outs = []
    for i, spec in enumerate((args.first, args.second)):
        out = scratch / f"out{i + 1}"
        if i == 0 and args.reuse_first and out.is_dir():
            print(f"[1] {spec}: outputs of an earlier run in {out}", flush=True)
            outs.append(out)
            continue
        tree = checkout(spec, scratch)
        print(f"[{i + 1}] {spec}: {tree}", flush=True)
        try:
            run_tree(tree, work, [args.rsseg], args.threads)
        finally:
            if tree.parent == scratch:  # a worktree of ours: not left registered in the repository
                subprocess.run(["git", "-C", str(tree), "worktree", "remove", "--force", str(tree)],
                               capture_output=True)
        if out.exists():
            shutil.rmtree(out)
        work.rename(out)
        outs.append(out)
    lines, bad = compare(*outs)
    print("\n".join(lines))
    counts = {k: sum(line.startswith(k) for line in lines) for k in ("identical", "same", "DIFFERENT", "ONLY")}
    print(f"\n{len(lines)} files: {counts['identical']} identical, {counts['same']} equal up to times/"
          f"pickling, {counts['DIFFERENT']} different, {counts['ONLY']} in one tree only")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
