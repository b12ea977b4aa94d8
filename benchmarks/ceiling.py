"""How fast full-scene inference could be on this machine, whatever the code (``make bench-ceiling``).

Prints the model's cost per pixel (``torch.utils.flop_counter``), the machine's matrix-multiply
peak in fp32 (torch) and int8 (onnxruntime ``MatMulInteger``) at the bench's thread count, and
from them the time an ideal program would need for a scene: every pixel computed once, at the
peak, nothing else. With ``--seed-seconds`` (the wall time of variant (a) in ``make
bench-infer``) it prints the largest a/c any fp32 or int8 program could reach. Issue 5's a/c >= 3
target is judged against these numbers in the README.

    python benchmarks/ceiling.py --checkpoint demo-output/bench-infer/runs/bench/checkpoints/best.ckpt \
        --seed-seconds 44.7
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np


def best_of(fn, repeat: int = 5) -> float:
    fn()
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def fp32_peak(n: int, threads: int) -> float:
    """GFLOP/s of an n x n fp32 matrix product in torch."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    return 2 * n**3 / best_of(lambda: a @ b) / 1e9


def int8_peak(n: int, threads: int) -> float:
    """GOP/s of an n x n uint8 x int8 -> int32 matrix product in onnxruntime (MLAS kernels)."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["A", "B"], ["Y"])], "gemm",
        [helper.make_tensor_value_info("A", TensorProto.UINT8, [n, n]),
         helper.make_tensor_value_info("B", TensorProto.INT8, [n, n])],
        [helper.make_tensor_value_info("Y", TensorProto.INT32, [n, n])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    session = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feed = {"A": rng.integers(0, 255, (n, n), dtype=np.uint8), "B": rng.integers(-127, 127, (n, n), dtype=np.int8)}
    return 2 * n**3 / best_of(lambda: session.run(None, feed)) / 1e9


def flops_per_pixel(checkpoint: Path, side: int = 256) -> float:
    """Forward FLOPs per input pixel of the checkpoint's network (convolutions and matmuls)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from rsseg.trained.checkpoint import load_predictor

    predictor = load_predictor(checkpoint)
    x = torch.zeros(1, predictor.in_channels, side, side)
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        predictor.model.eval()(x)
    return counter.get_total_flops() / side**2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--height", type=int, default=6800)
    parser.add_argument("--width", type=int, default=7200)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--gemm", type=int, default=2048, help="matrix side for the peak measurements")
    parser.add_argument("--seed-seconds", type=float, help="wall time of variant (a) on this scene")
    args = parser.parse_args()

    per_pixel = flops_per_pixel(args.checkpoint)
    pixels = args.height * args.width
    peaks = {"fp32": fp32_peak(args.gemm, args.threads), "int8": int8_peak(args.gemm, args.threads)}
    print(f"model: {per_pixel / 1e3:.1f} kFLOP per pixel; scene {args.width} x {args.height} "
          f"({pixels / 1e6:.1f} Mpix); {args.threads} threads")
    for name, peak in peaks.items():
        ideal = pixels * per_pixel / (peak * 1e9)
        line = f"  {name}: peak {peak:6.1f} G(FL)OP/s, ideal scene time {ideal:5.1f} s"
        if args.seed_seconds:
            line += f", largest possible a/c {args.seed_seconds / ideal:.2f}"
        print(line)


if __name__ == "__main__":
    main()
