"""Full-scene inference: the seed's procedure against rsseg's streamed modes, side by side.

    make bench-infer                     # 7200 x 6800 synthetic scene + real images
    make bench-infer ARGS="--scenes synthetic --variants reference,fast,fast-onnx,fast-low"
    python benchmarks/infer.py --quick   # a 2048 x 2048 scene, for a smoke run
    make bench-infer ARGS="--repeat 3"  # the fastest of 3 runs per variant: steadier ratios

Variants, each in a fresh process (so its peak RSS is its own), on the same scene and model:
  a seed       the seed's procedure re-implemented: whole scene in memory, normalised and
               reflect-padded, then a per-patch loop at batch 1 (256 -> keep 224), one GeoTIFF
               written at the end. Each patch goes through ``Predictor.logits``, i.e. in rsseg's
               layout and precision (fp32, channels_last on a CPU): the layout is not part of
               the procedure, and in PyTorch's default NCHW layout oneDNN sums in another order
               (1 pixel of 49 M differed from b). The batch size does not change the arithmetic
               (tests/test_infer.py checks it bit for bit), so a and b are identical.
  b reference  rsseg predict --mode reference (streamed; all outputs: GeoTIFF, PNGs, areas)
  c fast       rsseg predict --mode fast
  d bound      the bare forward of c's network over the scene as non-overlapping tiles of
               c's kept size (no margin, no I/O, no argmax): the lower bound for c
  e naive      rsseg predict --mode naive (224 px tiles, no border handling), for seam scores
Memory variants (peak RSS; torch's import alone is about 0.55 GB with the CUDA wheel):
  b-low        b with low_memory=True (forward passes of at most 4 x 256² px: batch 4)
  c-low        c with low_memory=True (fast tiles of at most 480 px)
  c-onnx       c with the ONNX engine (the checkpoint exported once to WORK/model.onnx); the
               process never imports torch
  c-onnx-low   c-onnx with low_memory=True
  c-int8       c on the ONNX file quantized to int8 (``rsseg quantize``, calibrated on the demo
               training images the model learned from; agreement with fp32 checked there)
Every variant runs under ``rsseg.allocator.warm_allocator`` (freed memory kept in the process),
as rsseg's own prediction does: without it, glibc page-faults a large window's activations again
on every forward pass. Wall time is noisy on a shared machine, so CPU time (user + system) is
printed too.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
REAL = {
    "deepglobe": "deepglobe-unlabelled",  # first JPEG of the folder, 2448 x 2448
    "landsat8": "landsat8-scene/LC08_L1TP_224078_20200518_20200518_01_RT.TIF",
}
#: variant -> (label, mode, low_memory, engine)
SPECS = {
    "seed": ("a", None, False, "torch"),
    "reference": ("b", "reference", False, "torch"),
    "fast": ("c", "fast", False, "torch"),
    "bound": ("d", None, False, "torch"),
    "naive": ("e", "naive", False, "torch"),
    "reference-low": ("b-low", "reference", True, "torch"),
    "fast-low": ("c-low", "fast", True, "torch"),
    "fast-onnx": ("c-onnx", "fast", False, "onnx"),
    "fast-onnx-low": ("c-onnx-low", "fast", True, "onnx"),
    "fast-int8": ("c-int8", "fast", False, "onnx-int8"),
}
VARIANTS = tuple(SPECS)
LETTER = {v: spec[0] for v, spec in SPECS.items()}


def rss_mb(field: str = "VmRSS") -> float:
    """Current (VmRSS) or peak (VmHWM) resident memory of this process. Not ru_maxrss: Linux
    carries the parent's peak across fork + exec into it."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


# ----------------------------------------------------------------- variants (child side)
def seed_classes(predictor, image, window: int = 256, keep: int = 224):
    """The seed's procedure on a raw (C, H, W) image: the whole scene normalised and
    reflect-padded, then one window at a time (batch 1), centre kept. ``tests/test_infer.py``
    checks rsseg's ``reference`` against this very function."""
    import numpy as np
    import torch

    m = (window - keep) // 2
    x = predictor.select_and_normalize(image)
    _, h, w = x.shape
    nh, nw = -(-h // keep), -(-w // keep)
    x = np.pad(x, ((0, 0), (m, nh * keep - h + m), (m, nw * keep - w + m)), mode="reflect")
    classes = np.zeros((h, w), dtype=np.uint8)
    for i in range(nh):
        for j in range(nw):
            tile = np.ascontiguousarray(x[:, i * keep : i * keep + window, j * keep : j * keep + window])
            # rsseg's layout and precision (see the module docstring), batch 1
            pred = predictor.logits(torch.from_numpy(tile)[None])[0].argmax(0)[m : m + keep, m : m + keep]
            hh, ww = min(keep, h - i * keep), min(keep, w - j * keep)
            classes[i * keep : i * keep + hh, j * keep : j * keep + ww] = pred[:hh, :ww].numpy()
    return classes


def run_seed(predictor, scene: Path, out: Path) -> None:
    import rasterio

    with rasterio.open(scene) as src:
        image, profile = src.read(), src.profile
    classes = seed_classes(predictor, image)
    h, w = classes.shape
    profile = {"driver": "GTiff", "width": w, "height": h, "count": 1, "dtype": "uint8", "nodata": 255,
               "compress": "deflate", "tiled": True, "blockxsize": 256, "blockysize": 256,
               "crs": profile.get("crs"), "transform": profile["transform"]}
    with rasterio.open(out / f"{scene.stem}_classes.tif", "w", **profile) as dst:
        dst.write(classes, 1)


def run_bound(predictor, scene: Path, out: Path, fast_tile: int) -> tuple[float, float]:
    """Wall and CPU seconds of the bare forward passes only (reading and tiling come first)."""
    import numpy as np
    import rasterio
    import torch

    from rsseg.infer import PredictOptions
    from rsseg.infer.engine import batch_size_for

    opts = PredictOptions.build(predictor, mode="fast", fast_tile=fast_tile)  # c's tiles, --fast-tile included
    fast = opts.configure(predictor)
    with rasterio.open(scene) as src:
        x = fast.select_and_normalize(src.read())
    grid = opts.grid(x.shape[1], x.shape[2])
    tiles = [np.ascontiguousarray(x[:, y : y + ky, c : c + kx])
             for y, ky in zip(grid.row_starts, grid.row_sizes) for c, kx in zip(grid.col_starts, grid.col_sizes)]
    del x
    bs = batch_size_for(opts.batch_size, opts.window, grid)
    start, cpu = time.perf_counter(), time.process_time()
    i = 0
    while i < len(tiles):  # batches of consecutive tiles of one shape
        j = i + 1
        while j < len(tiles) and j - i < bs and tiles[j].shape == tiles[i].shape:
            j += 1
        fast.logits(torch.from_numpy(np.stack(tiles[i:j])))
        i = j
    return time.perf_counter() - start, time.process_time() - cpu


def child(args: argparse.Namespace) -> None:
    from rsseg.allocator import warm_allocator
    from rsseg.infer import predict_file

    _, mode, low_memory, engine = SPECS[args.run]
    if engine.startswith("onnx"):  # torch is never imported on this path
        from rsseg.trained.onnx_engine import load_onnx_predictor

        predictor = load_onnx_predictor(args.checkpoint)
    else:
        from rsseg.trained.checkpoint import load_predictor

        predictor = load_predictor(args.checkpoint)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    base = rss_mb()
    t0, c0 = time.perf_counter(), time.process_time()
    forward = None
    # every variant under the allocator setting rsseg predicts with (rsseg.allocator), so the
    # seed loop and the bound run in the same conditions as b and c
    with warm_allocator():
        if args.run == "seed":
            run_seed(predictor, args.scene, out)
        elif args.run == "bound":
            forward = run_bound(predictor, args.scene, out, args.fast_tile)
        else:
            predict_file(predictor, args.scene, out, mode=mode, fast_tile=args.fast_tile, low_memory=low_memory)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    if forward is not None:  # the bound counts its forward passes only
        wall, cpu = forward
    peak = rss_mb("VmHWM")
    print(json.dumps({"wall": wall, "cpu": cpu, "peak_mb": peak, "base_mb": base,
                      "torch": "torch" in sys.modules}))


# ------------------------------------------------------------------------- parent side
def synthetic_scene(path: Path, h: int, w: int) -> Path:
    from rsseg.data.synthetic import generate_scene, write_scene

    if not path.exists():
        print(f"generating a {w} x {h} synthetic scene -> {path}", flush=True)
        image, mask = generate_scene(h, w, seed=2026)
        write_scene(image, mask, path, path.with_name(path.stem + "_mask.tif"))
    return path


def trained_checkpoint(work: Path, epochs: int) -> Path:
    """The demo's U-Net trained for ``epochs`` on the demo's synthetic data (cached)."""
    from rsseg.config import load_config
    from rsseg.demo import demo_config_path
    from rsseg.training.train import train

    ckpt = work / "runs" / "bench" / "checkpoints" / "best.ckpt"
    if not ckpt.exists():
        print(f"training the demo U-Net for {epochs} epochs -> {ckpt}", flush=True)
        cfg = load_config(demo_config_path(), [
            f"data.root={work / 'data'}", f"output.dir={work / 'runs'}", "output.name=bench",
            f"train.epochs={epochs}"])
        train(cfg, config_name="bench", progress=False)
    return ckpt


def onnx_model(work: Path, ckpt: Path) -> Path:
    """The checkpoint exported to ONNX (and verified against torch) for the c-onnx variants."""
    from rsseg.trained.export import export_onnx

    path = work / "model.onnx"
    print(f"exporting {ckpt} -> {path}", flush=True)
    return export_onnx(ckpt, path)


def int8_model(work: Path, onnx_path: Path) -> Path:
    """The ONNX file quantized to int8, calibrated on the demo training images (the model's own
    training imagery; with --checkpoint and no demo data there, on the synthetic scenes)."""
    from rsseg.trained.quantize import quantize_onnx

    images = sorted((work / "data" / "train" / "images").glob("*.tif")) or sorted(work.glob("synthetic_*x*[0-9].tif"))
    path = work / "model-int8.onnx"
    result = quantize_onnx(onnx_path, images, path)
    print(f"quantized {onnx_path} -> {path} on {len(images)} image(s): int8 agrees with fp32 on "
          f"{result.agreement:.3%} of {result.check_windows} check windows' pixels", flush=True)
    return path


def measure(variant: str, scene: Path, models: dict[str, Path], out: Path, fast_tile: int) -> dict:
    model = models[SPECS[variant][3]]
    cmd = [sys.executable, __file__, "--run", variant, "--scene", str(scene), "--checkpoint", str(model),
           "--out", str(out), "--fast-tile", str(fast_tile)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode:
        raise SystemExit(f"{variant} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def compare(work: Path, scene: Path, variants: list[str]) -> dict:
    import rasterio

    from rsseg.infer import seam_score

    maps = {}
    for v in variants:
        path = work / v / f"{scene.stem}_classes.tif"
        if path.exists():
            with rasterio.open(path) as ds:
                maps[v] = ds.read(1)
    report = {}
    if "seed" in maps and "reference" in maps:
        report["b_vs_a_differing_pixels"] = int((maps["seed"] != maps["reference"]).sum())
    if "reference-low" in maps and "reference" in maps:
        report["b-low_vs_b_differing_pixels"] = int((maps["reference-low"] != maps["reference"]).sum())
    if "reference" in maps:
        for v in ("fast", "fast-low", "fast-onnx", "fast-onnx-low", "fast-int8"):
            if v in maps:
                report[f"{LETTER[v]}_vs_b_agreement"] = float((maps[v] == maps["reference"]).mean())
    for v, m in maps.items():
        areas = work / v / f"{scene.stem}_areas.json"  # the kept tile size each rsseg run used
        tile = json.loads(areas.read_text())["keep"] if areas.exists() else (224, 224)
        report[f"seam_{v}"] = round(seam_score(m, *tile).score, 3)
    mask = scene.with_name(scene.stem + "_mask.tif")
    if mask.exists():
        with rasterio.open(mask) as ds:
            truth = ds.read(1)
        report.update({f"accuracy_{v}": round(float((m == truth).mean()), 4) for v, m in maps.items()})
    return report


def bench_scene(name: str, scene: Path, models: dict[str, Path], work: Path, variants: list[str], fast_tile: int,
                keep_outputs: bool = True, repeat: int = 1) -> None:
    import shutil

    import rasterio

    with rasterio.open(scene) as ds:
        mpix = ds.width * ds.height / 1e6
        size = f"{ds.width} x {ds.height}"
    print(f"\n== {name}: {scene.name}, {size} px ({mpix:.1f} Mpix), load {os.getloadavg()[0]:.1f}", flush=True)
    rows = {}
    for v in variants:
        # the fastest of `repeat` runs: wall times of one variant varied by up to 20 % between runs
        runs = [measure(v, scene, models, work / name / v, fast_tile) for _ in range(max(1, repeat))]
        rows[v] = r = min(runs, key=lambda run: run["wall"])
        torch_note = "" if r.get("torch", True) else ", torch never imported"
        print(f"  {LETTER[v]:<10} {v:<13} wall {r['wall']:8.1f} s  cpu {r['cpu']:8.1f} s  "
              f"{mpix / r['wall']:6.3f} Mpix/s  peak RSS {r['peak_mb']:6.0f} MB "
              f"(+{r['peak_mb'] - r['base_mb']:.0f} over the {r['base_mb']:.0f} MB after loading{torch_note})",
              flush=True)
    for a, b in (("seed", "fast"), ("fast", "bound"), ("seed", "reference"), ("reference", "fast"),
                 ("fast-low", "fast"), ("fast-onnx", "fast"), ("seed", "fast-int8"), ("fast-int8", "fast")):
        if a in rows and b in rows:
            print(f"  {LETTER[a]}/{LETTER[b]} ({a}/{b}): wall {rows[a]['wall'] / rows[b]['wall']:.2f}  "
                  f"cpu {rows[a]['cpu'] / rows[b]['cpu']:.2f}")
    print("  " + json.dumps(compare(work / name, scene, variants)), flush=True)
    if not keep_outputs:  # maps and blends of ../shared/data stay out of the project tree
        shutil.rmtree(work / name, ignore_errors=True)


def real_scenes() -> dict[str, Path]:
    found = {}
    for name, rel in REAL.items():
        p = SHARED / rel
        if p.is_dir():
            p = next(iter(sorted(p.glob("*.jpg"))), None)
        if p is not None and p.exists():
            found[name] = p
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=ROOT / "demo-output" / "bench-infer")
    parser.add_argument("--checkpoint", type=Path, help="model to use (default: train the demo U-Net)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="2048 x 2048 scene, no real images")
    parser.add_argument("--scenes", default="synthetic,deepglobe,landsat8",
                        help="which of synthetic, deepglobe, landsat8 to run")
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help=f"comma-separated, from {', '.join(VARIANTS)}")
    parser.add_argument("--fast-tile", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=1, help="runs per variant; the fastest is reported")
    parser.add_argument("--scaling", action="store_true", help="also b and c on a 2048 x 2048 scene (memory vs size)")
    parser.add_argument("--run", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--scene", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        return child(args)
    import torch

    args.work.mkdir(parents=True, exist_ok=True)
    ckpt = args.checkpoint or trained_checkpoint(args.work, args.epochs)
    variants = [v for v in args.variants.split(",") if v]
    unknown = [v for v in variants if v not in SPECS]
    if unknown:
        raise SystemExit(f"unknown variants {unknown}; choose from {', '.join(VARIANTS)}")
    models = {"torch": ckpt}
    if any(SPECS[v][3].startswith("onnx") for v in variants):
        models["onnx"] = onnx_model(args.work, ckpt)
    if any(SPECS[v][3] == "onnx-int8" for v in variants):
        models["onnx-int8"] = int8_model(args.work, models["onnx"])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs; model {ckpt}")
    scenes = args.scenes.split(",")
    h, w = (2048, 2048) if args.quick else (6800, 7200)
    if "synthetic" in scenes:
        scene = synthetic_scene(args.work / f"synthetic_{w}x{h}.tif", h, w)
        bench_scene(f"synthetic-{w}x{h}", scene, models, args.work, variants, args.fast_tile, repeat=args.repeat)
    if args.scaling and not args.quick:
        small = synthetic_scene(args.work / "synthetic_2048x2048.tif", 2048, 2048)
        bench_scene("synthetic-2048x2048", small, models, args.work, ["reference", "fast"], args.fast_tile)
    if not args.quick:
        for name, path in real_scenes().items():
            if name in scenes:
                bench_scene(name, path, models, args.work, variants, args.fast_tile, keep_outputs=False,
                            repeat=args.repeat)


if __name__ == "__main__":
    main()
