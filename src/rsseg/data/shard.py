"""Each process's share of an epoch under DDP: disjoint, and drawn alike on every rank.

Lightning's ``use_distributed_sampler`` pads validation with repeated chips (a biased
confusion matrix) and wraps custom samplers (EBB subsets, ``data.sampling``) by drawing
them independently on each rank. rsseg turns it off and shards here instead: every rank
draws the same epoch list from a generator seeded by (seed, epoch) and keeps the positions
``rank, rank + world, ...``. One process: the loaders are left as they are.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, RandomSampler, Sampler

from rsseg.data.seeding import EpochSampler
from rsseg.errors import RsSegError


def current_rank() -> int:
    """This process's global rank (0 without a process group)."""
    dist = torch.distributed
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


class TrainShard(Sampler[int]):
    """Rank ``rank``'s share of one epoch of ``sampler`` (None: a shuffle of ``size`` chips).

    The tail that does not divide by ``world`` is dropped, not padded: every rank must run
    the same number of steps (the gradient all-reduce), and no chip counts twice.
    """

    def __init__(self, sampler: Sampler | None, size: int, world: int, seed: int = 0,
                 rank: int | None = None) -> None:
        self.sampler, self.size, self.world, self.seed, self.rank = sampler, size, world, seed, rank
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if isinstance(self.sampler, EpochSampler):
            self.sampler.set_epoch(epoch)

    def epoch_indices(self) -> list:
        """The whole epoch's draw, identical on every rank."""
        if isinstance(self.sampler, EpochSampler):  # draws from (seed, epoch) itself: (index, seed) pairs
            self.sampler.set_epoch(self.epoch)
            return list(self.sampler)
        gen = torch.Generator()
        gen.manual_seed(self.seed * 100_003 + self.epoch)
        if self.sampler is None:
            return torch.randperm(self.size, generator=gen).tolist()
        before = getattr(self.sampler, "generator", None)
        self.sampler.generator = gen  # SubsetRandomSampler, WeightedRandomSampler
        try:
            return [int(i) for i in self.sampler]
        finally:
            self.sampler.generator = before

    def __len__(self) -> int:
        drawn = self.size if self.sampler is None else len(self.sampler)  # type: ignore[arg-type]
        return drawn // self.world

    def __iter__(self) -> Iterator[int]:
        rank = current_rank() if self.rank is None else self.rank
        return iter(self.epoch_indices()[rank: len(self) * self.world: self.world])


class EvalShard(Sampler[int]):
    """Chips ``rank, rank + world, ...`` of ``size``, in order: nothing repeated or padded,
    so the ranks' confusion matrices sum to the single-process one."""

    def __init__(self, size: int, world: int, rank: int | None = None) -> None:
        self.size, self.world, self.rank = size, world, rank

    def _range(self) -> range:
        return range(current_rank() if self.rank is None else self.rank, self.size, self.world)

    def __len__(self) -> int:
        return len(self._range())

    def __iter__(self) -> Iterator[int]:
        return iter(self._range())


def shard_loaders(train_dl: DataLoader, val_dl: DataLoader | None, world: int,
                  seed: int) -> tuple[DataLoader, DataLoader | None]:
    """The loaders rebuilt with this module's shards for ``world`` processes."""
    def rebuilt(dl: DataLoader, sampler: Sampler, drop_last: bool) -> DataLoader:
        return DataLoader(dl.dataset, batch_size=dl.batch_size, sampler=sampler, drop_last=drop_last,
                          num_workers=dl.num_workers, persistent_workers=dl.persistent_workers)

    inner = None if isinstance(train_dl.sampler, RandomSampler) else train_dl.sampler
    shard = TrainShard(inner, len(train_dl.dataset), world, seed)  # type: ignore[arg-type]
    train = rebuilt(train_dl, shard, len(shard) > (train_dl.batch_size or 1))
    if val_dl is None:
        return train, None
    if len(val_dl.dataset) < world:  # type: ignore[arg-type]
        raise RsSegError(f"train.devices: {world} processes but only {len(val_dl.dataset)} validation "  # type: ignore[arg-type]
                         "chips: every process needs one")
    return train, rebuilt(val_dl, EvalShard(len(val_dl.dataset), world), False)  # type: ignore[arg-type]
