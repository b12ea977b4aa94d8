"""The plain ~100-line PyTorch recipe that rsseg's default training must beat (``make bench-plain``).

The recipe, as a new user would write it (issue 18's reference): random 224 px crops anywhere in
Dubai tiles 1-5, a random D4 transform, batch 8, Adam 1e-3 constant, cross-entropy ignoring pure
black and 'unlabeled', bf16 autocast + channels_last where the CPU runs bf16 natively (fp32
otherwise), ImageNet mean/std, a fixed wall-clock budget, the final weights, and tile-7 test scenes
predicted whole in one forward pass (reflect-padded to a multiple of 32). Only the network comes
from rsseg (``build_model``: the same SMP U-Net and the same ImageNet EfficientNet-Lite0 weights
from the package), so the comparison is of recipes, not architectures.

``--rsseg`` also runs ``rsseg train CONFIG`` at the same budget and thread count *at the same
time* (each process pinned to its own cores where there are enough), then ``rsseg evaluate`` on
its best checkpoint, and prints both side by side:

    python benchmarks/plain_baseline.py --minutes 20 --threads 1 --rsseg configs/dubai.yaml --eval-at 8 15
    python benchmarks/plain_baseline.py --minutes 20 --threads 2 --rsseg configs/dubai.yaml --sequential
    python benchmarks/plain_baseline.py --minutes 1 --threads 1          # a quick look

``--eval-at`` also scores the plain model at those training minutes (the evaluation's time is
left out of the budget), for the time-to-accuracy; ``--sequential`` gives each recipe the whole
machine in turn, where the cores cannot hold both side by side at ``--threads`` each.
rsseg's side is evaluated as a user gets it: its model checkpoint (``train.select``) in the
checkpoint's own prediction mode (``infer.mode``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
DUBAI = ROOT / ".." / "shared" / "data" / "dubai-aerial"
COLOURS = [(60, 16, 152), (132, 41, 246), (110, 193, 228), (254, 221, 58), (226, 169, 41)]  # 5 scored classes
NAMES = ["building", "land", "road", "vegetation", "water"]
RSSEG = str(Path(sys.executable).parent / "rsseg")  # the CLI of this environment
IGNORE = 255  # black borders and 'unlabeled' (155, 155, 155)
MEAN = np.array([0.485, 0.456, 0.406], np.float32) * 255
STD = np.array([0.229, 0.224, 0.225], np.float32) * 255


def load_pair(image: Path) -> tuple[np.ndarray, np.ndarray]:
    """(H, W, 3) float32 normalised image, (H, W) int64 labels."""
    rgb = np.asarray(Image.open(image).convert("RGB"), np.float32)
    mask = np.asarray(Image.open(image.parent.parent / "masks" / f"{image.stem}.png").convert("RGB"))
    labels = np.full(mask.shape[:2], IGNORE, np.int64)
    for index, colour in enumerate(COLOURS):
        labels[(mask == colour).all(-1)] = index
    return (rgb - MEAN) / STD, labels


def load_tiles(root: Path, tiles: list[int]) -> list[tuple[np.ndarray, np.ndarray]]:
    return [load_pair(p) for t in tiles for p in sorted((root / f"Tile {t}" / "images").glob("*.jpg"))]


def random_batch(scenes, batch: int, size: int, rng: random.Random) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = [], []
    for _ in range(batch):
        image, labels = scenes[rng.randrange(len(scenes))]
        y0, x0 = rng.randint(0, image.shape[0] - size), rng.randint(0, image.shape[1] - size)
        x = torch.from_numpy(image[y0:y0 + size, x0:x0 + size]).permute(2, 0, 1)
        y = torch.from_numpy(labels[y0:y0 + size, x0:x0 + size])
        k, flip = rng.randrange(4), rng.random() < 0.5  # a random element of D4
        x, y = torch.rot90(x, k, (1, 2)), torch.rot90(y, k, (0, 1))
        if flip:
            x, y = x.flip(2), y.flip(1)
        xs.append(x)
        ys.append(y)
    return torch.stack(xs), torch.stack(ys)


def build(channels_last: bool) -> torch.nn.Module:
    from rsseg.config import load_config
    from rsseg.models import build_model

    cfg = load_config(ROOT / "configs" / "dubai.yaml")
    model = build_model(cfg.model, 3, len(COLOURS) + 1)  # the same head width as rsseg (+ 'unlabeled')
    return model.to(memory_format=torch.channels_last) if channels_last else model


def train(model, scenes, minutes: float, bf16: bool, channels_last: bool, seed: int,
          checkpoints: dict[float, object] | None = None) -> int:
    """Train for ``minutes`` of training time; ``checkpoints`` maps training minutes to a callback
    run then (an evaluation), whose own time is left out of the budget."""
    rng = random.Random(seed)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    pending = sorted((checkpoints or {}).items())
    model.train()
    steps, spent, start = 0, 0.0, time.monotonic()
    while spent < minutes * 60:
        x, y = random_batch(scenes, 8, 224, rng)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(model(x).float(), y, ignore_index=IGNORE)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        steps += 1
        spent = time.monotonic() - start
        while pending and spent >= pending[0][0] * 60:
            pending.pop(0)[1](steps)
            model.train()
            start = time.monotonic() - spent  # the evaluation's time is not training time
    return steps


@torch.no_grad()
def evaluate(model, scenes, bf16: bool, channels_last: bool) -> dict:
    """Whole scenes in one forward pass each; IoU over the 5 scored classes from one confusion matrix."""
    model.eval()
    n = len(COLOURS)
    confusion = torch.zeros(n, n, dtype=torch.int64)
    for image, labels in scenes:
        h, w = labels.shape
        x = torch.from_numpy(image).permute(2, 0, 1)[None]
        x = F.pad(x, (0, -w % 32, 0, -h % 32), mode="reflect")
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(x).float()[0, :n, :h, :w]  # the 'unlabeled' logit is never predicted
        pred, truth = logits.argmax(0).flatten(), torch.from_numpy(labels).flatten()
        keep = truth != IGNORE
        confusion += torch.bincount(truth[keep] * n + pred[keep], minlength=n * n).reshape(n, n)
    tp = confusion.diag().double()
    iou = tp / (confusion.sum(0) + confusion.sum(1) - tp).double().clamp(min=1)
    return {"miou": float(iou.mean()), "iou": dict(zip(NAMES, map(float, iou))),
            "oa": float(tp.sum() / confusion.sum())}


def start_rsseg(config: Path, minutes: float, threads: int, cores: list[int] | None, seed: int) -> subprocess.Popen:
    cmd = [RSSEG, "train", str(config), "--set", f"train.threads={threads}", "--set", f"train.seed={seed}",
           "--set", f"train.max_minutes={minutes}",
           "--set", f"output.name=plain-vs-rsseg-{minutes:g}min-{threads}t-seed{seed}-{int(time.time())}"]
    pin = (lambda: os.sched_setaffinity(0, cores)) if cores else None
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, preexec_fn=pin)


def finish_rsseg(proc: subprocess.Popen, threads: int, cores: list[int] | None) -> dict:
    """Wait for ``rsseg train``, then ``rsseg evaluate`` its model checkpoint (``train.select``) with the
    checkpoint's own prediction mode: the map a user gets from ``rsseg predict`` with the defaults."""
    out, _ = proc.communicate()
    lines = {k: line.split(": ", 1)[1].split(" (")[0].strip() for line in out.splitlines()
             for k in ("run directory", "model checkpoint") if line.startswith(f"{k}: ")}
    if proc.returncode or len(lines) < 2:
        return {"error": f"rsseg train failed ({proc.returncode}): {out[-400:]}"}
    run_dir, model = Path(lines["run directory"]), Path(lines["model checkpoint"])
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    pin = (lambda: os.sched_setaffinity(0, cores)) if cores else None
    subprocess.run([RSSEG, "evaluate", str(model), "--split", "test", "--out", str(run_dir / "eval-plain-bench")],
                   check=True, capture_output=True, env=env, preexec_fn=pin)
    metrics = json.loads((run_dir / "eval-plain-bench" / "metrics.json").read_text())
    from rsseg.safe_load import read_lightning_checkpoint

    steps = int(read_lightning_checkpoint(run_dir / "checkpoints" / "last.ckpt").get("global_step", 0))
    return {"miou": metrics["miou"], "iou": {k: metrics["per_class"][k]["iou"] for k in NAMES},
            "mode": metrics.get("mode"), "steps": steps, "run_dir": str(run_dir), "checkpoint": str(model)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=15.0, help="training wall-clock budget")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--root", type=Path, default=DUBAI)
    parser.add_argument("--rsseg", type=Path, default=None, help="also train this rsseg config side by side")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--sequential", action="store_true",
                        help="run rsseg first, then the plain script, each with the whole machine (where the "
                             "cores cannot hold both side by side at --threads each)")
    parser.add_argument("--eval-at", type=float, nargs="*", default=[],
                        help="also score the plain model at these training minutes (time-to-accuracy)")
    args = parser.parse_args()

    from rsseg.runtime import cpu_has_native_bf16

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    bf16 = channels_last = cpu_has_native_bf16()
    cores = sorted(os.sched_getaffinity(0))
    plain_cores = cores[: args.threads] if len(cores) >= 2 * args.threads and not args.sequential else None
    proc, rsseg_result = None, None
    rsseg_cores = cores[args.threads: 2 * args.threads] if plain_cores else None
    if args.rsseg:
        proc = start_rsseg(args.rsseg, args.minutes, args.threads, rsseg_cores, args.seed)
        if args.sequential:  # the plain script starts once rsseg has trained and been evaluated
            rsseg_result, proc = finish_rsseg(proc, args.threads, None), None
    if plain_cores:
        os.sched_setaffinity(0, plain_cores)
    train_scenes, test_scenes = load_tiles(args.root, [1, 2, 3, 4, 5]), load_tiles(args.root, [7])
    model = build(channels_last)
    early: dict[str, dict] = {}

    def score(minute: float):
        return lambda steps: early.__setitem__(f"{minute:g}", {"steps": steps, **evaluate(model, test_scenes, bf16,
                                                                                         channels_last)})

    steps = train(model, train_scenes, args.minutes, bf16, channels_last, args.seed,
                  {m: score(m) for m in args.eval_at if m < args.minutes})
    results = {"plain": {"steps": steps, **evaluate(model, test_scenes, bf16, channels_last)},
               "plain_at_minutes": early,
               "setting": {"minutes": args.minutes, "threads": args.threads, "bf16": bf16, "seed": args.seed,
                           "side_by_side": bool(args.rsseg) and not args.sequential,
                           "cpu": _cpu_name()}}
    if proc is not None:
        results["rsseg"] = finish_rsseg(proc, args.threads, rsseg_cores)
    elif rsseg_result is not None:
        results["rsseg"] = rsseg_result
    print(f"{'recipe':8} {'steps':>6} {'mIoU':>6} " + " ".join(f"{n:>10}" for n in NAMES))
    for name in ("plain", "rsseg"):
        r = results.get(name)
        if r and "miou" in r:
            print(f"{name:8} {r.get('steps', '?'):>6} {r['miou']:6.3f} " + " ".join(f"{r['iou'][n]:10.3f}" for n in NAMES))
        elif r:
            print(f"{name:8} {r['error']}")
    for minute, r in early.items():
        print(f"plain at {minute} min: {r['steps']} steps, mIoU {r['miou']:.3f}")
    print(json.dumps(results["setting"]))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


def _cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


if __name__ == "__main__":
    main()
