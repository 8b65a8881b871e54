"""Benchmark: enumeration of non-crossing partitions NC(n), n = 14, 15, 16.

Measures, in one run and on the same machine state:

- ``compact``: ``iter_label_batches`` (int8 label rows);
- ``objects``: ``noncrossing_partitions`` (NCPartition values), both from
  :mod:`detequiv.diagrams.partitions`;
- ``baseline``: a plain recursive Python generator yielding restricted-growth label
  tuples (written below), the natural first implementation.

Each measurement runs in a fresh subprocess, which reports its best wall time over a
few repeats (the machine may be shared) and its peak resident set size
(``ru_maxrss``), so the memory column shows whether memory stays flat in ``n``; for
the compact form a separate pass also reports the ``tracemalloc`` peak (``traced``,
numpy buffers included).
``import`` is the RSS of a child that only imports the package. The baseline is capped
at ``--baseline-cap`` seconds per ``n`` (its rate is then measured on a prefix of the
enumeration and marked ``partial``). Every run also checks its count (Catalan) or, for
a partial baseline, that it produced the lexicographically first rows.

Usage: ``python benchmarks/bench_nc.py [--n 14 15 16] [--baseline-cap 10]``
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
import tracemalloc
from math import comb

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def baseline_nc_labels(n):
    """Plain recursive generator: restricted-growth label tuples of NC(n), in order.

    A block is either opened (new label) or an open block (on the stack) is continued,
    which closes every block above it.
    """

    def rec(prefix, stack, fresh):
        if len(prefix) == n:
            yield prefix
            return
        for c, lab in enumerate(stack):
            yield from rec((*prefix, lab), stack[: c + 1], fresh)
        yield from rec((*prefix, fresh), (*stack, fresh), fresh + 1)

    yield from rec((), (), 0)


REPEATS = {"compact": 3, "objects": 2, "baseline": 1, "import": 1}


def child(method: str, n: int, cap: float) -> dict:
    from detequiv.diagrams.partitions import (
        catalan,
        iter_label_batches,
        noncrossing_partitions,
    )

    times = []
    partial = False
    first: list[tuple[int, ...]] = []
    count = 0
    # repeat short runs, keep the best time (timeit convention; the machine is shared)
    for _rep in range(REPEATS[method] if n < 16 or method == "compact" else 1):
        count = 0
        t0 = time.perf_counter()
        if method == "compact":
            for batch in iter_label_batches(n):
                count += len(batch)
        elif method == "objects":
            for _ in noncrossing_partitions(n):
                count += 1
        elif method == "baseline":
            for labels in baseline_nc_labels(n):
                count += 1
                if count <= 1000:
                    first.append(labels)
                if not count & 0xFFFF and time.perf_counter() - t0 > cap:
                    partial = True
                    break
        elif method != "import":
            raise SystemExit(f"unknown method {method!r}")
        times.append(time.perf_counter() - t0)
    if method == "baseline":  # sanity: the baseline enumerates the same rows in order
        batch = next(iter_label_batches(n, batch_size=1000))
        assert [tuple(r) for r in batch.tolist()] == first[: len(batch)], (
            "baseline differs"
        )
    if method != "import" and not partial:
        assert count == catalan(n), f"{method} n={n}: {count} != Catalan {catalan(n)}"
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    traced_mb = None
    if method == "compact":  # allocations (numpy buffers included), in a separate pass
        tracemalloc.start()
        sum(len(batch) for batch in iter_label_batches(n))
        traced_mb = tracemalloc.get_traced_memory()[1] / 1e6
        tracemalloc.stop()
    return {
        "traced_mb": traced_mb,
        "count": count,
        "seconds": min(times),
        "runs": len(times),
        "partial": partial,
        "rss_mb": rss_mb,
    }


def run_child(method: str, n: int, cap: float) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", method, str(n), str(cap)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    ap.add_argument("--n", type=int, nargs="+", default=[14, 15, 16])
    ap.add_argument("--baseline-cap", type=float, default=10.0)
    ap.add_argument(
        "--child", nargs=3, metavar=("METHOD", "N", "CAP"), help=argparse.SUPPRESS
    )
    args = ap.parse_args()
    if args.child:
        method, n, cap = args.child
        print(json.dumps(child(method, int(n), float(cap))))
        return

    start = time.perf_counter()
    imp = run_child("import", 0, 0)
    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} cpu(s); "
        f"RSS after import only: {imp['rss_mb']:.1f} MB\n"
    )
    header = (
        f"{'n':>3} {'Catalan':>10} | {'method':>8} {'count':>10} {'best s':>8} "
        f"{'runs':>4} {'M part/s':>9} {'peak RSS MB':>11} {'traced MB':>9}"
    )
    print(header)
    print("-" * len(header))
    summary = []
    for n in args.n:
        rates = {}
        for method in ("compact", "objects", "baseline"):
            r = run_child(method, n, args.baseline_cap)
            rate = r["count"] / r["seconds"]
            rates[method] = rate
            cat = comb(2 * n, n) // (n + 1)
            tag = " (partial)" if r["partial"] else ""
            traced = "-" if r["traced_mb"] is None else f"{r['traced_mb']:.1f}"
            print(
                f"{n:>3} {cat:>10} | {method:>8} {r['count']:>10} {r['seconds']:>8.2f} "
                f"{r['runs']:>4} {rate / 1e6:>9.2f} {r['rss_mb']:>11.1f} {traced:>9}"
                f"{tag}"
            )
        summary.append((n, rates))
        print()
    print("ratios (same run):")
    for n, rates in summary:
        base = rates["baseline"]
        print(
            f"  n={n}: compact / baseline = {rates['compact'] / base:6.1f}x   "
            f"objects / baseline = {rates['objects'] / base:5.1f}x   "
            f"compact = {rates['compact'] / 1e6:5.1f} M/s (target >= 3)   "
            f"objects = {rates['objects'] / 1e6:4.2f} M/s (target >= 1)"
        )
    print(f"\ntotal wall time {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
