"""torch fp32 vs onnxruntime latency for the U-Net on this machine, with their agreement.

Exports a randomly initialised U-Net through ``rsseg.trained.export`` (the same path as
``rsseg export``), then times one inference batch in each engine:
    .venv/bin/python benchmarks/onnx_bench.py --width 16 --batch 8 --tile 224
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from rsseg.config.infer import InferConfig
from rsseg.classes import ClassTable
from rsseg.config import UNetConfig
from rsseg.trained.export import export_predictor
from rsseg.models import build_model
from rsseg.trained.onnx_engine import load_onnx_predictor
from rsseg.trained.predictor import Predictor


def best_of(fn, repeats: int) -> float:
    fn()  # warm-up: first calls allocate and pick kernels
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--width", type=int, default=16, help="U-Net base width (seed: 64)")
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--tile", type=int, default=224)
    parser.add_argument("--classes", type=int, default=7)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch and ORT threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    k = args.classes
    classes = ClassTable(names=tuple(f"c{i}" for i in range(k)), colors=((0, 0, 0),) * k)
    model = build_model(UNetConfig(base_width=args.width, depth=args.depth), 3, k)
    x = torch.randn(args.batch, 3, args.tile, args.tile)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; U-Net width {args.width} "
          f"depth {args.depth}; batch {args.batch}x{args.tile}px; best of {args.repeats}")

    with tempfile.TemporaryDirectory() as tmp:
        engines = {}
        for cl in (False, True):
            copy = build_model(UNetConfig(base_width=args.width, depth=args.depth), 3, k)
            copy.load_state_dict(model.state_dict())
            engines[f"torch fp32{' +channels_last' if cl else ''}"] = Predictor(
                model=copy, classes=classes, mean=[0.0] * 3, std=[1.0] * 3, precision="32", channels_last=cl
            )
        export_src = Predictor(model=model, classes=classes, mean=[0.0] * 3, std=[1.0] * 3,
                               defaults=InferConfig(window=args.tile, keep=args.tile), precision="32", channels_last=False)
        t0 = time.perf_counter()
        path = export_predictor(export_src, Path(tmp) / "unet.onnx", name="benchmark U-Net")
        print(f"export + verification: {time.perf_counter() - t0:.2f} s, {path.stat().st_size / 1e6:.1f} MB")
        engines["onnxruntime"] = load_onnx_predictor(path)

        ref = engines["torch fp32"].logits(x)
        base = None
        for name, pred in engines.items():
            seconds = best_of(lambda pred=pred: pred.logits(x), args.repeats)
            out = pred.logits(x)
            diff = float((out - ref).abs().max())
            agree = float((out.argmax(1) == ref.argmax(1)).float().mean())
            base = base or seconds
            print(f"{name:>26}: {seconds:7.3f} s/batch ({seconds / base:4.2f}x)  "
                  f"max abs diff {diff:.2g}  argmax agreement {agree:.5%}")


if __name__ == "__main__":
    main()
