"""Speed of every registered model, fp32 vs bf16, on this machine (``make bench-models``).

For each model (default options, random init): parameters, training images/s (Adam step,
batch 8 x 224 px), inference Mpix/s, and how often the bf16 argmax equals the fp32 one on
the same weights and input. bf16 means autocast + channels_last. On CPUs without native bf16
(AVX2 only) PyTorch emulates it and it is very slow: use --steps 1 and few --models there.
    python benchmarks/models.py --models unet smp-unet --steps 1 --precision fp32 bf16
``--set KEY=VALUE`` gives every measured model an option (its config section's key, YAML value):
    python benchmarks/models.py --models smp-unet --precision bf16 --threads 1 \
        --set encoder=resnet18 --set pretrained=geoembed-aerial-resnet18
"""

from __future__ import annotations

import argparse
import copy
import time
import warnings

import torch
import torch.nn.functional as F
import yaml

from rsseg.allocator import warm_allocator
from rsseg.models import MODELS, build_model, count_parameters, model_configs
from rsseg.runtime import cpu_has_native_bf16


def _timed(fn, steps: int, warmup: int, device: torch.device) -> float:
    for _ in range(warmup):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / steps


def measure(model: torch.nn.Module, state: dict, precision: str, args: argparse.Namespace,
            device: torch.device) -> tuple[float, float, torch.Tensor]:
    """(train images/s, inference Mpix/s, argmax of the first inference batch)."""
    bf16 = precision == "bf16"
    fmt = torch.channels_last if bf16 or args.channels_last else torch.contiguous_format
    model.load_state_dict(state)
    model.to(device=device, memory_format=fmt)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, args.bands, args.size, args.size, generator=gen)
    x = x.to(device).contiguous(memory_format=fmt)
    y = torch.randint(0, args.classes, (args.batch, args.size, args.size), generator=gen).to(device)

    def forward() -> torch.Tensor:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            return model(x)

    model.eval()
    with torch.inference_mode():
        pred = forward().float().argmax(1).cpu()
        infer_s = _timed(forward, args.steps, args.warmup, device)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)

    def step() -> None:
        loss = F.cross_entropy(forward().float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    train_s = _timed(step, args.steps, args.warmup, device)
    mpix = args.batch * args.size * args.size / 1e6
    return args.batch / train_s, mpix / infer_s, pred


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS), metavar="NAME",
                        help=f"models to run (default: all: {', '.join(MODELS)})")
    parser.add_argument("--precision", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument("--steps", type=int, default=3, help="timed steps/batches per measurement")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps before timing")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--bands", type=int, default=3)
    parser.add_argument("--classes", type=int, default=7)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--channels-last", action="store_true", help="channels_last for fp32 too")
    parser.add_argument("--set", dest="options", action="append", default=[], metavar="KEY=VALUE",
                        help="a model option for every measured model (e.g. encoder=resnet18; YAML value)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    native = device.type == "cuda" and torch.cuda.is_bf16_supported() or device.type == "cpu" and cpu_has_native_bf16()
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"cpu {torch.backends.cpu.get_cpu_capability()}, {torch.get_num_threads()} threads"
    print(f"torch {torch.__version__}, {where}; batch {args.batch} x {args.bands} x {args.size}^2, "
          f"{args.classes} classes, {args.steps} timed steps (+{args.warmup} warm-up)")
    if "bf16" in args.precision and not native:
        warnings.warn("this device has no native bf16: bf16 is emulated (very slow); "
                      "its speed here says nothing about bf16 hardware", stacklevel=1)
    print(f"{'model':<22}{'params':>9}{'precision':>11}{'train img/s':>13}{'infer Mpix/s':>14}{'argmax =fp32':>14}")
    configs = model_configs()
    with warm_allocator():  # as rsseg trains and predicts (rsseg.allocator)
        run_models(args, configs, device)
    print("argmax agreement is on random weights (near-tied logits): a lower bound for trained models")


def model_options(pairs: list[str]) -> dict:
    """``["encoder=resnet18", ...]`` -> ``{"encoder": "resnet18", ...}`` (values read as YAML)."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"--set {pair!r}: expected KEY=VALUE")
        out[key.strip()] = yaml.safe_load(value)
    return out


def run_models(args: argparse.Namespace, configs: dict, device: torch.device) -> None:
    for name in args.models:
        torch.manual_seed(0)
        model = build_model(configs[name](name=name, **model_options(args.options)), args.bands, args.classes)
        state = copy.deepcopy(model.state_dict())
        preds = {}
        for precision in args.precision:
            train, infer, preds[precision] = measure(model, state, precision, args, device)
            agree = ""
            if precision != "fp32" and "fp32" in preds:
                agree = f"{(preds[precision] == preds['fp32']).float().mean().item():.4f}"
            print(f"{name:<22}{count_parameters(model) / 1e6:>8.1f}M{precision:>11}{train:>13.2f}{infer:>14.3f}{agree:>14}",
                  flush=True)
        del model, state


if __name__ == "__main__":
    main()
