"""Fake FLAIR #1: ``flair_aerial_train/<domain>/<zone>/img/IMG_n.tif`` (5 bands) + labels (1..19)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fakedata._io import image, labels, write_tif

DOMAINS = {
    ("train", "D006_2020"): ["Z10_UA", "Z11_AU"],
    ("train", "D007_2020"): ["Z1_NN"],
    ("train", "D008_2019"): ["Z2_UU"],
    ("train", "D009_2019"): ["Z3_AA"],
    ("test", "D012_2019"): ["Z5_NU"],
}


def make(root: Path) -> Path:
    root = Path(root)
    n = 0
    for (split, domain), zones in DOMAINS.items():
        aerial = "flair_aerial_train" if split == "train" else "flair_1_aerial_test"
        label = "flair_labels_train" if split == "train" else "flair_1_labels_test"
        for zone in zones:
            for _ in range(2):
                n += 1
                write_tif(root / aerial / domain / zone / "img" / f"IMG_{n:06d}.tif", image(n, 32, 32, bands=5))
                msk = labels(n, 32, 32, list(range(1, 20))).astype(np.uint8)
                write_tif(root / label / domain / zone / "msk" / f"MSK_{n:06d}.tif", msk)
    return root
