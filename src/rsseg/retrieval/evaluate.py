"""How other methods rank places with respect to EMD (seed 000 Table 3).

Top-N: 1 when EMD's first pick is among the method's first N. Top-N@M: the share of EMD's
first N picks found among the method's first M. Both are averaged over the queries.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rsseg.errors import RsSegError
from rsseg.retrieval.query import Searcher, default_methods, resolve_method


def top_n(reference: Sequence[Any], ranking: Sequence[Any], n: int) -> float:
    """1.0 if ``reference[0]`` (EMD's first pick) is in ``ranking[:n]``, else 0.0."""
    if not reference:
        raise RsSegError("Top-N needs a non-empty reference ranking")
    return float(reference[0] in list(ranking[:n]))


def top_n_at_m(reference: Sequence[Any], ranking: Sequence[Any], n: int, m: int) -> float:
    """Share of ``reference[:n]`` found in ``ranking[:m]`` (over the picks that exist)."""
    ref = list(reference[:n])
    if not ref:
        raise RsSegError("Top-N@M needs a non-empty reference ranking")
    return len(set(ref) & set(ranking[:m])) / len(ref)


def columns(ns: Sequence[int], n_at: int, ms: Sequence[int]) -> list[str]:
    return [f"top{n}" for n in ns] + [f"top{n_at}@{m}" for m in ms]


def score_rankings(
    reference: Sequence[Any], ranking: Sequence[Any], ns: Sequence[int], n_at: int, ms: Sequence[int]
) -> dict[str, float]:
    """One query's row of the table."""
    row = {f"top{n}": top_n(reference, ranking, n) for n in ns}
    row.update({f"top{n_at}@{m}": top_n_at_m(reference, ranking, n_at, m) for m in ms})
    return row


def _queries(searcher, queries: Sequence[str | Path] | int, seed: int) -> list:
    if isinstance(queries, int):
        if not 0 < queries <= searcher.index.count:
            raise RsSegError(f"cannot sample {queries} query tiles from an index of {searcher.index.count}")
        rows = np.random.default_rng(seed).choice(searcher.index.count, size=queries, replace=False)
        queries = [searcher.index.tiles[int(r)]["id"] for r in sorted(rows)]
    if not queries:
        raise RsSegError("compare needs at least one query (tile ids or images)")
    return [searcher.query(q) for q in queries]


def compare_methods(
    index, queries: Sequence[str | Path] | int, ns: Sequence[int] = (1, 5, 10), n_at: int = 5,
    ms: Sequence[int] = (5, 10, 20, 50), methods: Sequence[str] | None = None,
    checkpoint: Path | None = None, seed: int = 0,
) -> dict[str, dict[str, float]]:
    """{method: {column: mean over queries}} against EMD, for every method of the index.

    ``queries``: tile ids / image paths, or a number of tiles drawn at random (``seed``).
    """
    s = index if isinstance(index, Searcher) else Searcher(index, checkpoint)
    resolved = [resolve_method(s.index, m) for m in (methods or default_methods(s.index))]
    qs = _queries(s, queries, seed)
    emd = resolve_method(s.index, "emd")
    depth = max([*ns, *ms])
    cols = columns(ns, n_at, ms)
    sums = {m.name: dict.fromkeys(cols, 0.0) for m in resolved}
    for q in qs:
        ref = list(s.rank(q, emd, max(n_at, 1))[1])
        for m in resolved:
            row = score_rankings(ref, list(s.rank(q, m, depth)[1]), ns, n_at, ms)
            for c in cols:
                sums[m.name][c] += row[c]
    return {name: {c: v / len(qs) for c, v in row.items()} for name, row in sums.items()}


def format_comparison(table: dict[str, dict[str, float]], title: str = "") -> str:
    """Plain-text table, one row per method (as seed Table 3)."""
    if not table:
        return "(no methods)"
    cols = list(next(iter(table.values())))
    width = max(12, *(len(m) for m in table)) + 2
    lines = [title] if title else []
    lines.append("method".ljust(width) + "".join(c.rjust(9) for c in cols))
    for name, row in table.items():
        lines.append(name.ljust(width) + "".join(f"{row[c]:9.3f}" for c in cols))
    return "\n".join(lines)
