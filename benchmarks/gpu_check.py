"""The short GPU check (``make gpu-check``, about 5 minutes on a GPU machine).

1. train the demo config for an epoch on CUDA (``train.accelerator=gpu``);
2. predict a synthetic scene with that checkpoint on CUDA and on the CPU, both fp32: class maps
   must agree on >= 99.5 % of pixels (cuDNN and oneDNN sum in different orders);
3. the ONNX export on onnxruntime's CUDA provider, where it is installed, against the CPU map;
4. ``benchmarks/infer.py --quick`` with CUDA visible.

On a machine without CUDA each CUDA part is skipped with a line saying so, and the check
passes: it is run wherever a GPU is available, and its output is recorded in the README.

    python benchmarks/gpu_check.py [--work runs/gpu-check] [--epochs 1]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MIN_AGREEMENT = 0.995


def say(step: str, text: str) -> None:
    print(f"[gpu-check] {step}: {text}", flush=True)


def train_on_cuda(work: Path, epochs: int) -> Path:
    from rsseg.config import load_config
    from rsseg.training.train import train

    demo = ROOT / "src" / "rsseg" / "configs" / "demo.yaml"
    cfg = load_config(demo, [f"data.root={work / 'data'}", f"output.dir={work / 'runs'}", "output.name=gpu",
                             "train.accelerator=gpu", "train.devices=1", f"train.epochs={epochs}"])
    t0 = time.perf_counter()
    run = train(cfg, config_name="gpu-check", progress=False)
    say("train", f"{time.perf_counter() - t0:.1f} s on CUDA -> {run.best_checkpoint}")
    return run.best_checkpoint


def predict_both(ckpt: Path, work: Path) -> tuple[np.ndarray, np.ndarray]:
    import rasterio
    import torch

    from rsseg.trained.checkpoint import load_predictor
    from rsseg.data.synthetic import generate_scene, write_scene
    from rsseg.infer import predict_file

    scene = work / "scene.tif"
    if not scene.exists():
        image, mask = generate_scene(1024, 1024, seed=7)
        write_scene(image, mask, scene, work / "scene_mask.tif")
    maps = []
    for device in ("cuda", "cpu"):
        predictor = load_predictor(ckpt, device=torch.device(device))
        t0 = time.perf_counter()
        out = predict_file(predictor, scene, work / f"pred-{device}", precision="32")
        say("predict", f"{device}: {time.perf_counter() - t0:.1f} s")
        with rasterio.open(out["classes"]) as src:
            maps.append(src.read(1))
    return maps[0], maps[1]


def onnx_cuda(ckpt: Path, work: Path, cpu_map: np.ndarray) -> None:
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        say("onnx", "skipped: onnxruntime has no CUDAExecutionProvider here (pip install onnxruntime-gpu)")
        return
    from rsseg.trained.export import export_onnx
    from rsseg.trained.onnx_engine import load_onnx_predictor

    model = export_onnx(ckpt, work / "model.onnx")
    predictor = load_onnx_predictor(model, device="cuda")
    from rsseg.infer import predict_file

    out = predict_file(predictor, work / "scene.tif", work / "pred-onnx-cuda")
    import rasterio

    with rasterio.open(out["classes"]) as src:
        agree = float((src.read(1) == cpu_map).mean())
    say("onnx", f"CUDA provider agrees with the CPU map on {agree:.4%}")
    if agree < MIN_AGREEMENT:
        raise SystemExit(f"[gpu-check] FAIL: ONNX CUDA agreement {agree:.4%} < {MIN_AGREEMENT:.1%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "gpu-check")
    parser.add_argument("--epochs", type=int, default=1, help="demo training epochs on CUDA")
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        say("all", "skipped: no CUDA device on this machine (torch.cuda.is_available() is False); "
                   "run `make gpu-check` on a GPU machine")
        return
    say("device", f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}, "
                  f"bf16 {'yes' if torch.cuda.is_bf16_supported() else 'no'}")
    args.work.mkdir(parents=True, exist_ok=True)
    ckpt = train_on_cuda(args.work, args.epochs)
    gpu_map, cpu_map = predict_both(ckpt, args.work)
    agree = float((gpu_map == cpu_map).mean())
    say("agreement", f"CUDA vs CPU class maps (fp32): {agree:.4%} of {gpu_map.size} pixels")
    if agree < MIN_AGREEMENT:
        raise SystemExit(f"[gpu-check] FAIL: agreement {agree:.4%} < {MIN_AGREEMENT:.1%}")
    onnx_cuda(ckpt, args.work, cpu_map)
    t0 = time.perf_counter()
    bench = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "infer.py"), "--quick"],
                           capture_output=True, text=True)
    say("bench-infer --quick", f"exit {bench.returncode} in {time.perf_counter() - t0:.0f} s")
    print(bench.stdout[-3000:])
    if bench.returncode:
        raise SystemExit(f"[gpu-check] FAIL: bench-infer --quick: {bench.stderr[-500:]}")
    say("all", "passed")


if __name__ == "__main__":
    main()
