"""Many scenes: ``rsseg predict`` and ``rsseg index build`` in one process vs on a local Dask
cluster of 2 worker processes, same cores in all (``make bench-scenes``).

Eight (``--scenes``) synthetic 1536 px scenes, the demo U-Net (the inference bench's cached
checkpoint), ``fast`` mode. Variants, each timed from the command's start to its end (cluster
start-up included):
  predict-1p   --workers 0, torch on every core
  predict-2w   --workers 2, cores / 2 torch threads per worker
  index-1p     index build, one process
  index-2w     index build --workers 2
Then a kill check: ``predict --workers 2 --skip-existing`` is killed once half the scenes are
written and rerun; the rerun computes only the rest (their files' times say which).

    python benchmarks/scenes.py [--scenes 8] [--size 1536] [--work runs/bench-scenes]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


def make_scenes(folder: Path, count: int, size: int) -> list[Path]:
    from rsseg.data.synthetic import generate_scene, write_scene

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"scene{i:02d}.tif"
        if not path.exists():
            image, _ = generate_scene(size, size, seed=100 + i)
            write_scene(image, None, path, None)
        paths.append(path)
    return paths


def rsseg(*args: str) -> list[str]:
    return [str(Path(sys.executable).parent / "rsseg"), *args]


def timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{done.stderr[-2000:]}")
    return time.perf_counter() - t0


def kill_and_rerun(ckpt: Path, scenes: list[Path], out: Path) -> tuple[int, int]:
    """(scenes finished before the kill, scenes the rerun wrote)."""
    cmd = rsseg("predict", str(ckpt), *map(str, scenes), "--out", str(out), "--mode", "fast",
                "--workers", "2", "--skip-existing")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    half = len(scenes) // 2
    done = "*_item.json"  # the STAC Item is a scene's last output
    while proc.poll() is None and len(list(out.glob(done))) < half:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = {p: p.stat().st_mtime_ns for p in out.glob(done)}
    timed(cmd)
    after = {p: p.stat().st_mtime_ns for p in out.glob(done)}
    untouched = sum(after[p] == t for p, t in before.items())
    if untouched != len(before):
        raise SystemExit(f"the rerun recomputed {len(before) - untouched} finished scene(s)")
    return len(before), len(after) - len(before)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenes", type=int, default=8)
    parser.add_argument("--size", type=int, default=1536)
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "bench-scenes")
    args = parser.parse_args()
    from infer import trained_checkpoint

    ckpt = trained_checkpoint(ROOT / "runs" / "bench-infer", 3)
    scenes = make_scenes(args.work / "scenes", args.scenes, args.size)
    cores = os.cpu_count() or 1
    print(f"{len(scenes)} scenes of {args.size} px, {cores} cores, checkpoint {ckpt}")
    times = {}
    for name, extra in (("predict-1p", ["--workers", "0", "--threads", str(cores)]), ("predict-2w", ["--workers", "2"])):
        times[name] = timed(rsseg("predict", str(ckpt), *map(str, scenes), "--out", str(args.work / name),
                                  "--mode", "fast", *extra))
    for name, extra in (("index-1p", []), ("index-2w", ["--workers", "2"])):
        times[name] = timed(rsseg("index", "build", str(ckpt), *map(str, scenes), "--out",
                                  str(args.work / name), *extra))
    for name, seconds in times.items():
        print(f"{name:12} {seconds:7.1f} s  {len(scenes) / seconds:.3f} scenes/s")
    print(f"throughput ratio 2 workers / 1 process: predict {times['predict-1p'] / times['predict-2w']:.2f}, "
          f"index {times['index-1p'] / times['index-2w']:.2f}")
    done, rest = kill_and_rerun(ckpt, scenes, args.work / "killed")
    print(f"kill check: {done} scene(s) finished before the kill were kept, the rerun wrote {rest}")


if __name__ == "__main__":
    main()
