"""Training randomness as a pure function of (seed, epoch, draw), so a resumed run is exact.

A run killed and resumed from ``last.ckpt`` restarts with fresh random generators and fresh
DataLoader workers; an uninterrupted one carries its generators on from epoch to epoch (and a
persistent worker keeps its own across epochs). Saving every generator would not reach into
the workers. Instead nothing random carries over an epoch boundary: the epoch's chip order
comes from ``(seed, epoch)`` and every draw (random shift, augmentation) from
``(seed, epoch, position)``, whichever process reads it (``EpochSampler`` + ``SeededDraws``);
``rsseg.training.callbacks.EpochSeeds`` reseeds the main process (dropout) from ``(seed, epoch)``.
The epoch is all a resume needs: ``last.ckpt`` is only written as an epoch ends (a
``train.max_minutes`` stop ends its epoch early, with a validation; Ctrl-C saves nothing).
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, RandomSampler, Sampler


def derive_seed(*keys: int) -> int:
    """A well-mixed 63-bit seed from integer keys (negative ones allowed)."""
    entropy = [int(k) % 2**64 for k in keys]
    return int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0]) >> 1


def seed_all(seed: int) -> None:
    """Seed torch (CPU and every CUDA device), numpy and ``random`` in this process."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


class EpochSampler(Sampler[tuple[int, int]]):
    """Yields ``(index, draw seed)``: ``base``'s order drawn from ``(seed, epoch)``, one seed per draw.

    ``base`` is any sampler drawing from torch's global generator (``RandomSampler``,
    ``WeightedRandomSampler``, ``SubsetRandomSampler`` without a ``generator``); None
    shuffles ``size`` items. Lightning calls ``set_epoch`` before each epoch.
    """

    def __init__(self, base: Sampler[int] | None, size: int, seed: int) -> None:
        self.base = base if base is not None else RandomSampler(range(size))
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(derive_seed(self.seed, self.epoch))  # CPU only, as forked
            order = [int(i) for i in self.base]
        for position, index in enumerate(order):
            yield index, derive_seed(self.seed, self.epoch, position)


class SeededDraws(Dataset):
    """``dataset[index]`` read with torch, numpy and ``random`` seeded from the draw's seed.

    The process's own generators are left as they were, so it makes no difference whether
    a worker or the main process reads the chip.
    """

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, item: tuple[int, int]):
        index, seed = item
        np_state, py_state = np.random.get_state(), random.getstate()
        try:
            with torch.random.fork_rng(devices=[]):  # chips are read on the CPU
                torch.default_generator.manual_seed(seed)
                np.random.seed(seed % 2**32)
                random.seed(seed)
                return self.dataset[index]
        finally:
            np.random.set_state(np_state)
            random.setstate(py_state)
