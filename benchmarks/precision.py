"""fp32 vs bf16 autocast (+ channels_last) for the seed U-Net on this machine, side by side.

Prints seconds per training step and per inference batch, and the bf16/fp32 ratios, so the
``precision: auto`` choice (``rsseg.runtime``) can be checked on any machine:
    make bench-precision
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from rsseg.config import UNetConfig
from rsseg.models import build_model
from rsseg.runtime import cpu_has_native_bf16


def measure(bf16: bool, channels_last: bool, args: argparse.Namespace) -> tuple[float, float]:
    torch.manual_seed(0)
    model = build_model(UNetConfig(base_width=args.width), 3, 7)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    x = torch.randn(args.batch, 3, args.tile, args.tile).contiguous(memory_format=fmt)
    y = torch.randint(0, 7, (args.batch, args.tile, args.tile))
    times = []
    for _ in range(args.repeats + 1):
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = model(x)
        loss = F.cross_entropy(out.float(), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    train_s = min(times[1:])
    model.eval()
    xi = torch.randn(args.batch, 3, 256, 256).contiguous(memory_format=fmt)
    times = []
    with torch.inference_mode():
        for _ in range(args.repeats + 1):
            t0 = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                model(xi)
            times.append(time.perf_counter() - t0)
    return train_s, min(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--tile", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"cpu capability {torch.backends.cpu.get_cpu_capability()}, native bf16: {cpu_has_native_bf16()}")
    print(f"U-Net base width {args.width}; train step batch {args.batch}x{args.tile}px; "
          f"inference batch {args.batch}x256px (best of {args.repeats})")
    rows = {}
    for name, bf16, cl in [("fp32", False, False), ("fp32+channels_last", False, True),
                           ("bf16", True, False), ("bf16+channels_last", True, True)]:
        rows[name] = measure(bf16, cl, args)
        print(f"{name:>20}: train {rows[name][0]:7.3f} s/step   inference {rows[name][1]:7.3f} s/batch")
    base = rows["fp32"]
    for name, (tr, inf) in rows.items():
        print(f"{name:>20}: {tr / base[0]:5.2f}x train time, {inf / base[1]:5.2f}x inference time vs fp32")


if __name__ == "__main__":
    main()
