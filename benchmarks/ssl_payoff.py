"""Does self-supervised pretraining pay off? Scratch vs ImageNet EfficientNet-Lite0 vs SSL.

Every arm is the same smp-unet on the same encoder, trained on the same labelled split and
scored on the test split (fine-tuned: ``rsseg evaluate``'s Border-Corrected mIoU; linear
probe: ``rsseg.ssl.probe``). Equal total CPU budget: an arm gets ``--budget`` minutes, and
the SSL arm spends ``--pretrain-minutes`` of them pretraining (on the labelled dataset's
training images, masks unused, plus ``--unlabelled`` folders), the rest fine-tuning. The
ImageNet weights come from an installed package (their pretraining cost is not counted).

    python benchmarks/ssl_payoff.py --data dubai --budget 45 --pretrain-minutes 30 --threads 2
    python benchmarks/ssl_payoff.py --data sentinel2 --budget 45 --pretrain-minutes 30
    python benchmarks/ssl_payoff.py --data dubai --smoke      # minutes: checks the pipeline only

Dubai: tiles 1-5 train, 6 validation, 7 test. Sentinel-2 (Strzegom, all 10 bands, where no
ImageNet weights fit): 4 dates train (no validation), the 2 of 2023 test; SSL positives are the
same ground at the other training dates. Results: OUT/results.json and OUT/results.md.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from rsseg.config import validate_config
from rsseg.config.pretrain import PretrainConfig

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
STRZEGOM = ["conifer forest", "mixed forest", "urban", "crops", "bare soil", "permanent grassland",
            "roads", "water", "crops (vegetation stage)", "quarries"]

DATA: dict[str, dict[str, Any]] = {
    "dubai": {
        "data": {"dataset": "dubai", "root": str(SHARED / "dubai-aerial"), "tile_size": 224},
        "smoke_split": {"train": ["Tile 1/image_part_00[12]"], "val": ["Tile 6/image_part_001"],
                        "test": ["Tile 7/image_part_001"]},
        "imagenet": True,
        # landsat8-scene is uint16: pretraining standardises it by its own band statistics
        "unlabelled": [str(SHARED / "deepglobe-unlabelled"), str(SHARED / "landsat8-scene")],
    },
    "sentinel2": {
        "data": {
            "dataset": "multispectral", "root": str(SHARED / "sentinel2-strzegom"), "tile_size": 128,
            "images": "img_train/*.tif", "masks": "training_masks/*.tif",
            "classes": [{"name": n, "value": v} for v, n in enumerate(STRZEGOM, start=1)],
            "split": {"train": ["*20210619*", "*20220619*", "*20220719*", "*20221012*"], "val": [],
                      "test": ["*2023*"]},
        },
        "smoke_split": {"train": ["*20210619*"], "val": [], "test": ["*20230209*"]},
        "imagenet": False,
        "unlabelled": [],
    },
}


def base_config(args: argparse.Namespace, name: str) -> dict[str, Any]:
    spec = DATA[args.data]
    data = {**spec["data"], "batch_size": args.batch, "cache_dir": str(args.out / "cache")}
    if args.smoke:
        data.update(split=spec["smoke_split"], tile_size=96)
    return {
        "data": data,
        "model": {"name": "smp-unet", "encoder": args.encoder},
        "optim": {"name": "adam", "lr": args.lr, "scheduler": "none"},
        "train": {"epochs": 10_000, "threads": args.threads, "seed": args.seed,
                  **({"epochs": 1, "limit_train_batches": 2} if args.smoke else {})},
        "output": {"dir": str(args.out / "runs"), "name": name},
    }


def finetune(args: argparse.Namespace, name: str, pretrained: str | None, minutes: float, frozen: bool) -> dict:
    from rsseg.evaluate import evaluate
    from rsseg.training.train import train

    done = _finished(args.out / "runs" / name)
    if done is not None:  # an interrupted benchmark resumes: finished arms are not retrained
        return done
    raw = base_config(args, name)
    raw["model"]["pretrained"] = pretrained
    raw["train"].update(max_minutes=minutes, freeze_encoder=frozen)
    # the LR decays (power 2) to zero when the arm's fine-tuning budget ends, for every arm alike
    raw["optim"].update(scheduler="poly", power=2.0, interval="time")
    run = train(validate_config(raw), config_name=name, progress=args.progress)
    result = evaluate(run.best_checkpoint, split="test", progress=args.progress)
    return {"miou": result.metrics["miou"], "minutes": run.seconds / 60, "epochs": run.epochs,
            "run": str(run.run_dir)}


def _finished(run_dir: Path) -> dict | None:
    """The row of a fine-tuning run that was trained and evaluated before (None if not)."""
    timings, metrics = run_dir / "timings.json", run_dir / "eval-test" / "metrics.json"
    if not (timings.exists() and metrics.exists()):
        return None
    seconds = json.loads(timings.read_text())
    if "evaluate test" not in seconds:
        return None
    from rsseg.trained.checkpoint import read_checkpoint

    epoch = read_checkpoint(run_dir / "checkpoints" / "last.ckpt").get("epoch")
    return {"miou": json.loads(metrics.read_text())["miou"], "minutes": seconds["train"] / 60,
            "epochs": epoch, "run": str(run_dir), "resumed": True}


def linear_probe(args: argparse.Namespace, weights: str) -> dict:
    from rsseg.ssl.probe import probe

    cfg = validate_config(base_config(args, "probe"))
    epochs = 1 if args.smoke else 10_000
    res = probe(weights, cfg, epochs=epochs, max_minutes=args.probe_minutes, progress=args.progress)
    return {"miou": res.miou, "minutes": res.seconds / 60, "steps": res.steps}


def ssl_pretrain(args: argparse.Namespace, name: str, start: str | None) -> dict:
    from rsseg.ssl.pretrain import pretrain

    raw = base_config(args, name)
    raw["model"]["pretrained"] = start
    pcfg = PretrainConfig(
        epochs=1 if args.smoke else 10_000, max_minutes=args.pretrain_minutes,
        limit_batches=2 if args.smoke else None, batch_size=8 if args.smoke else args.ssl_batch,
        tile_size=args.ssl_tile, view_size=args.ssl_view, lr=args.ssl_lr, schedule="constant",
        splits=args.ssl_splits, images=args.unlabelled, multi_date=True, other_date_p=args.other_date_p,
    )
    res = pretrain(validate_config(raw), pcfg, config_name=name, progress=args.progress)
    return {"encoder": str(res.encoder), "minutes": res.seconds / 60, "steps": res.steps, "loss": res.loss,
            "tiles": res.tiles, "images": res.images, "images_with_partners": res.images_with_partners}


def run_arm(args: argparse.Namespace, arm: str) -> dict:
    """One row: (optional) pretraining, fine-tuning (+ frozen), linear probe."""
    row: dict[str, Any] = {"arm": arm, "pretrain_minutes": 0.0}
    weights: str | None = None
    if arm == "imagenet":
        weights = "imagenet-efficientnet-lite0"
    elif arm in ("ssl", "imagenet+ssl"):
        start = "imagenet-efficientnet-lite0" if arm == "imagenet+ssl" else None
        row["pretrain"] = ssl_pretrain(args, f"{args.data}-{arm.replace('+', '-')}-pretrain", start)
        weights = row["pretrain"]["encoder"]
        row["pretrain_minutes"] = row["pretrain"]["minutes"]
    minutes = args.budget - (args.pretrain_minutes if arm in ("ssl", "imagenet+ssl") else 0.0)
    if minutes <= 0:
        raise SystemExit(f"--budget {args.budget} leaves no fine-tuning time after --pretrain-minutes")
    row["finetune_minutes"] = minutes
    tag = f"{args.data}-{arm.replace('+', '-')}"
    row["finetuned"] = finetune(args, f"{tag}-finetuned", weights, minutes, frozen=False)
    if args.frozen and weights is not None:
        row["frozen"] = finetune(args, f"{tag}-frozen", weights, minutes, frozen=True)
    row["probe"] = linear_probe(args, weights or "none")
    return row


def table(rows: list[dict], args: argparse.Namespace) -> str:
    def pct(v: float | None) -> str:
        return "n/a" if v is None else f"{100 * v:.1f}"

    frozen_head = "frozen-encoder mIoU % | " if args.frozen else ""
    lines = [
        f"| arm ({args.data}, {args.encoder}) | pretrain min | fine-tune min | fine-tuned mIoU % | "
        + f"{frozen_head}linear-probe mIoU % |",
        f"|---|---|---|---|{'---|' if args.frozen else ''}---|",
    ]
    for r in rows:
        frozen = f"{pct(r['frozen']['miou']) if 'frozen' in r else 'n/a'} | " if args.frozen else ""
        lines.append(f"| {r['arm']} | {r['pretrain_minutes']:.1f} | {r['finetuned']['minutes']:.1f} | "
                     f"{pct(r['finetuned']['miou'])} | {frozen}{pct(r['probe']['miou'])} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", choices=sorted(DATA), default="dubai")
    parser.add_argument("--arms", nargs="+", default=None,
                        help="scratch imagenet ssl imagenet+ssl (default: those that fit the data)")
    parser.add_argument("--budget", type=float, default=45.0, help="total minutes per arm (pretrain + fine-tune)")
    parser.add_argument("--pretrain-minutes", type=float, default=30.0, help="SSL pretraining minutes")
    parser.add_argument("--probe-minutes", type=float, default=5.0, help="linear-probe training minutes per arm")
    parser.add_argument("--frozen", action="store_true", help="also fine-tune with the encoder frozen")
    parser.add_argument("--encoder", default="timm-tf_efficientnet_lite0")
    parser.add_argument("--unlabelled", nargs="*", default=None, help="extra unlabelled folders for SSL")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--ssl-batch", type=int, default=64)
    parser.add_argument("--ssl-tile", type=int, default=96)
    parser.add_argument("--ssl-view", type=int, default=64)
    parser.add_argument("--ssl-lr", type=float, default=1e-3)
    parser.add_argument("--other-date-p", type=float, default=0.5)
    parser.add_argument("--ssl-splits", nargs="+", default=["train"], choices=["train", "val"],
                        help="splits whose images (masks unused) SSL reads; never test")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/ssl-payoff"))
    parser.add_argument("--smoke", action="store_true", help="a few steps and images per stage")
    parser.add_argument("--no-progress", dest="progress", action="store_false")
    args = parser.parse_args()
    spec = DATA[args.data]
    if not Path(spec["data"]["root"]).is_dir():
        raise SystemExit(f"{spec['data']['root']} not found (../shared/data)")
    args.out = (args.out / args.data).resolve()
    args.unlabelled = spec["unlabelled"] if args.unlabelled is None else args.unlabelled
    if args.smoke:
        args.budget, args.pretrain_minutes, args.probe_minutes = 2.0, 1.0, 0.2
        args.unlabelled = []
    arms = args.arms or (["scratch", "imagenet", "ssl"] if spec["imagenet"] else ["scratch", "ssl"])
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    start, rows = time.perf_counter(), []
    for arm in arms:
        print(f"== {arm}", flush=True)
        rows.append(run_arm(args, arm))
        print(table(rows, args), flush=True)
    text = f"{table(rows, args)}\n\n`{command}` ({(time.perf_counter() - start) / 60:.1f} min in all)\n"
    title = f"# Self-supervised pretraining payoff ({args.data}, test split)\n\n"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps({"command": command, "rows": rows}, indent=2))
    (args.out / "results.md").write_text(title + text)
    print(text)


if __name__ == "__main__":
    main()
