"""Exact EMD retrieval at scale: the rsseg index beside brute force (and FAISS IndexFlat L1).

For 10k, 100k and 1M synthetic signatures prints build time, index bytes, peak RSS, per-query
latency (queries that are index tiles, and new signatures) and whether every result equals
brute force (same tiles, same order, same distances):
    make bench-retrieval          # or: python benchmarks/retrieval.py --classes 16 --dist uniform

Synthetic signatures: ``clustered`` draws each tile around one of 24 landscape prototypes
(a few dominant classes, small classes dropped, rounded to 224 x 224 pixel counts), like
land-cover tiles; ``uniform`` draws flat Dirichlet(1) histograms (little structure, the
hard case for pruning). Each size runs in its own process so peak RSS is its own.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

from rsseg.retrieval.search import EmdSearcher, brute_force_emd
from rsseg.retrieval.signatures import quantize

PIXELS = 224 * 224


def synthetic(n: int, c: int, dist: str, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if dist == "uniform":
        h = rng.dirichlet(np.ones(c), size=n)
    else:
        protos = rng.dirichlet(np.full(c, 0.4), size=24)
        h = np.empty((n, c))
        for lo in range(0, n, 100_000):
            m = min(n, lo + 100_000) - lo
            p = protos[rng.integers(len(protos), size=m)]
            h[lo : lo + m] = rng.gamma(20 * p + 1e-3)
        h[h < 0.02 * h.sum(axis=1, keepdims=True)] = 0
    h = np.rint(h / h.sum(axis=1, keepdims=True) * PIXELS)
    h[h.sum(axis=1) == 0, 0] = 1
    return quantize(np.cumsum(h / h.sum(axis=1, keepdims=True), axis=1))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def one(n: int, args: argparse.Namespace) -> dict:
    data = synthetic(n, args.classes, args.dist, seed=0)
    fresh = synthetic(args.queries, args.classes, args.dist, seed=1)
    rng = np.random.default_rng(2)
    queries = np.concatenate([data[rng.integers(n, size=args.queries // 2)], fresh[: args.queries - args.queries // 2]])
    data_mb = data.nbytes / 2**20
    t0 = time.perf_counter()
    index = EmdSearcher(data)
    build_s = time.perf_counter() - t0
    lat, brute, identical = [], [], True
    for q in queries:
        t0 = time.perf_counter()
        d, r = index.search(q, args.k)
        lat.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        bd, br = brute_force_emd(data, q, args.k)
        brute.append(time.perf_counter() - t0)
        identical &= bool(np.array_equal(r, br) and np.array_equal(d, bd))
    row = {
        "n": n, "build_s": build_s, "index_mb": index.nbytes / 2**20, "data_mb": data_mb,
        "peak_rss_mb": peak_rss_mb(), "ms_tile": 1e3 * float(np.median(lat[: args.queries // 2])),
        "ms_new": 1e3 * float(np.median(lat[args.queries // 2 :])),
        "ms_mean": 1e3 * float(np.mean(lat)), "ms_p95": 1e3 * float(np.percentile(lat, 95)),
        "brute_ms": 1e3 * float(np.median(brute)), "identical": identical,
    }
    try:
        import faiss
    except ImportError:
        return row
    faiss.omp_set_num_threads(args.threads)
    t0 = time.perf_counter()
    flat = faiss.IndexFlat(data.shape[1], faiss.METRIC_L1)
    flat.add(data)
    row["faiss_build_s"] = time.perf_counter() - t0
    lat = []
    for q in queries[: args.faiss_queries]:
        t0 = time.perf_counter()
        flat.search(q[None], args.k)
        lat.append(time.perf_counter() - t0)
    row["faiss_ms"] = 1e3 * float(np.median(lat))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--classes", type=int, default=7)
    parser.add_argument("--dist", choices=["clustered", "uniform"], default="clustered")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--faiss-queries", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2, help="threads for BLAS/OpenMP (target: 2 cores)")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args)))
        return
    env = os.environ | {k: str(args.threads) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    print(f"exact EMD k-NN, k={args.k}, C={args.classes}, {args.dist} signatures, {args.queries} queries, "
          f"{args.threads} threads, {os.cpu_count()} CPUs visible")
    print("ms/query: median for queries that are index tiles / new signatures, mean and p95 over all;"
          " brute force and FAISS: median")
    head = (f"{'N':>9} {'build s':>8} {'index MB':>9} {'peak RSS MB':>12} {'tile':>7} {'new':>7} "
            f"{'mean':>7} {'p95':>7} {'brute ms':>9} {'faiss L1 ms':>12} {'identical':>10}")
    print(head)
    for n in (int(s) for s in args.sizes.split(",")):
        cmd = [sys.executable, __file__, "--one", str(n), *sys.argv[1:]]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        print(f"{r['n']:>9} {r['build_s']:>8.2f} {r['index_mb']:>9.1f} {r['peak_rss_mb']:>12.0f} "
              f"{r['ms_tile']:>7.2f} {r['ms_new']:>7.2f} {r['ms_mean']:>7.2f} {r['ms_p95']:>7.2f} {r['brute_ms']:>9.1f} "
              f"{r.get('faiss_ms', float('nan')):>12.1f} {r['identical']!s:>10}")


if __name__ == "__main__":
    main()
