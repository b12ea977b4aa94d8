"""Vectorising a 7200 x 6800 class map: wall time and peak RSS, per option (``make bench-vectorize``).

The map is the inference bench's synthetic scene's label map (7 classes, towns, fields, roads,
water), georeferenced in UTM at 0.5 m, plus ``--speckle`` of its pixels set to a random class,
as a predicted map has specks. Each variant runs in a fresh process so its peak RSS
(VmHWM) is its own; the map alone would be 49 MB as uint8, the polygons are held until written.

    python benchmarks/vectorize.py                       # exact, min-area 2 m², simplify 0.5 m
    python benchmarks/vectorize.py --height 2048 --width 2048 --variants exact
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

VARIANTS = {
    "exact": {},
    "min-area": {"min_area": 2.0},
    "simplify": {"simplify": 0.5},
    "min-area+simplify": {"min_area": 2.0, "simplify": 0.5},
}


def class_map(path: Path, height: int, width: int, speckle: float) -> Path:
    import numpy as np
    import rasterio
    from rasterio.transform import from_origin

    from rsseg.data.synthetic import generate_scene

    if path.exists():
        return path
    _, mask = generate_scene(height, width, seed=2026)
    rng = np.random.default_rng(0)
    specks = rng.random(mask.shape) < speckle
    mask[specks] = rng.integers(0, 7, specks.sum())
    with rasterio.open(path, "w", driver="GTiff", height=height, width=width, count=1, dtype="uint8",
                       nodata=255, crs="EPSG:32640", transform=from_origin(300000, 2800000, 0.5, 0.5),
                       tiled=True, compress="deflate") as dst:
        dst.write(mask, 1)
    return path


def child(args: argparse.Namespace) -> None:
    from rsseg.gis import VectorizeOptions, vectorize_map

    options = VectorizeOptions(**json.loads(args.options))
    t0 = time.perf_counter()
    result = vectorize_map(args.map, args.out, options=options)
    seconds = time.perf_counter() - t0
    peak = next(int(line.split()[1]) / 1024 for line in Path("/proc/self/status").read_text().splitlines()
                if line.startswith("VmHWM:"))
    print(json.dumps({"seconds": seconds, "peak_rss_mb": peak, "polygons": result.polygons,
                      "bytes": result.path.stat().st_size}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--height", type=int, default=6800)
    parser.add_argument("--width", type=int, default=7200)
    parser.add_argument("--speckle", type=float, default=0.01)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--work", type=Path, default=Path("runs/bench-vectorize"))
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--map", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--options", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    args.work.mkdir(parents=True, exist_ok=True)
    path = class_map(args.work / f"map_{args.width}x{args.height}_{args.speckle}.tif", args.height, args.width,
                     args.speckle)
    print(f"{'variant':20} {'seconds':>8} {'peak RSS':>9} {'polygons':>9} {'file MB':>8}")
    for name in args.variants.split(","):
        out = args.work / f"{name}.gpkg"
        proc = subprocess.run([sys.executable, __file__, "--child", "--map", str(path), "--out", str(out),
                               "--options", json.dumps(VARIANTS[name])], capture_output=True, text=True)
        if proc.returncode:
            print(f"{name:20} failed: {proc.stderr.strip().splitlines()[-1:]}")
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"{name:20} {r['seconds']:8.1f} {r['peak_rss_mb']:7.0f}MB {r['polygons']:9d} {r['bytes'] / 2**20:8.1f}")


if __name__ == "__main__":
    main()
