"""Benchmark: the driver's costs outside training as sweeps grow (scale-rehearsal issue).

Section ``results``: reading a sweep's trial rows while they are one part file per Tune
trial, as a sweep leaves them, and after
:meth:`~coretune.reports.results.ResultsStore.compact` merged them. Section ``students``
(``bench/driver_scale_students.py``): 1,000 and 10,000 near-empty students through the
real driver on a simulated multi-node cluster that loses a node midway — overhead per
student beside Ray Tune's bare per-trial cost, the artifact stage, driver memory, part
files, report time.

- ``one by one``: each part fetched, decoded and conformed on its own (8 threads) — how
  every read worked before compaction existed (and how a few parts are still read);
- ``scan``: the same parts as one pyarrow dataset scan (what ``read`` does for many parts);
- ``compacted``: after compaction (one file), from the local disk and from an S3 server on
  loopback (moto), the compacted file copied there.

Rows are the report tests' complete trial rows, one per part, 10 % of them superseded by a
later part (re-runs), so every path also deduplicates. Ratios are taken within one run.

Run: ``python bench/driver_scale.py [--rows 20000]`` (about 5 minutes at 20,000 on 2
cores, most of it writing the parts); ``--no-s3`` skips moto.
``python bench/driver_scale.py --section students [--students 1000 10000] [--nodes 4]
[--cpus 4] [--reference 1000]``. Results go to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path

import pandas as pd
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from coretune.reports.results import TABLES, ResultsStore  # noqa: E402
from coretune.storage import Location  # noqa: E402
from tests.reports.conftest import make_trial_row  # noqa: E402


def write_parts(store: ResultsStore, rows: int) -> None:
    """One part per trial row; every tenth row re-writes an earlier trial (a re-run)."""
    def one(i: int) -> None:
        tid = f"t{i - 9}" if i % 10 == 9 else f"t{i}"
        store.write("trials", [make_trial_row(trial_id=tid, seed=i % 100, test_acc=i / rows)])

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(one, range(rows)))


def one_by_one(store: ResultsStore) -> pd.DataFrame:
    """The read as it was before compaction: every part read and conformed alone."""
    spec = TABLES["trials"]
    names = store.parts("trials")
    with ThreadPoolExecutor(max_workers=8) as pool:
        tables = list(pool.map(lambda n: store._read_part(spec, n), names))
    frame = pa.concat_tables(tables).to_pandas()
    return frame.drop_duplicates(subset=list(spec.keys), keep="last").reset_index(drop=True)


def timed(fn, repeat: int = 1):
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def moto_server() -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                             str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("moto server did not start") from None
            time.sleep(0.1)
    return proc, f"endpoint_override=127.0.0.1:{port}&scheme=http&region=us-east-1"


def results_section(rows: int, s3: bool, root: Path) -> list[str]:
    store = ResultsStore(str(root / "out"))
    t_write, _ = timed(lambda: write_parts(store, rows))
    parts = len(store.parts("trials"))
    t_old, old = timed(lambda: one_by_one(store))
    t_scan, scan = timed(lambda: store.read("trials"))
    pd.testing.assert_frame_equal(old, scan)
    t_compact, done = timed(store.compact)
    t_after, after = timed(lambda: store.read("trials"), repeat=5)
    pd.testing.assert_frame_equal(old, after)
    lines = [
        f"## driver_scale: results (one run, {date.today()}, {os.cpu_count()} cores, "
        f"{rows:,} trial rows in {parts:,} parts, {len(old):,} after superseded rows)",
        "",
        "| read | seconds | per part (ms) | speed-up over one by one |",
        "|---|---:|---:|---:|",
        f"| one by one (before compaction existed) | {t_old:.2f} | {1e3 * t_old / parts:.2f}"
        " | 1.0× |",
        f"| scan of the parts | {t_scan:.2f} | {1e3 * t_scan / parts:.2f} | "
        f"{t_old / t_scan:.1f}× |",
        f"| compacted, local (best of 5) | {t_after:.3f} | – | {t_old / t_after:.0f}× |",
    ]
    if s3:
        proc, query = moto_server()
        try:
            Location(f"s3://testing:testing@bench?{query}&allow_bucket_creation=true"
                     ).fs.create_dir("bench")
            remote = ResultsStore(f"s3://testing:testing@bench/out?{query}")
            for name in store.parts("trials"):
                remote.location.write_bytes(name, store.location.read_bytes(name))
            t_s3, from_s3 = timed(lambda: remote.read("trials"), repeat=5)
            pd.testing.assert_frame_equal(old, from_s3)
        finally:
            proc.terminate()
            proc.wait(10)
        lines.append(f"| compacted, S3 on loopback (moto, best of 5) | {t_s3:.3f} | – | "
                     f"{t_old / t_s3:.0f}× ({t_s3 / t_after:.1f}× local) |")
    lines += ["", f"- writing the parts (4 threads): {t_write:.1f} s; compaction "
              f"{t_compact:.2f} s ({done['trials'][0]:,} parts → {done['trials'][1]})", ""]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--section", choices=["results", "students"], default="results")
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--no-s3", action="store_true")
    parser.add_argument("--students", type=int, nargs="+", default=[1_000, 10_000])
    parser.add_argument("--nodes", type=int, default=4, help="worker nodes (students)")
    parser.add_argument("--cpus", type=int, default=4, help="logical CPUs per worker node")
    parser.add_argument("--reference", type=int, default=1_000,
                        help="trivial Tune trials measuring Tune's bare per-trial cost")
    parser.add_argument("--results", default=str(Path(__file__).with_name("RESULTS.md")))
    args = parser.parse_args()
    if args.section == "students":
        from driver_scale_students import students_section

        lines = students_section(args.students, args.nodes, args.cpus, args.reference)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            lines = results_section(args.rows, not args.no_s3, Path(tmp))
    text = "\n".join(lines)
    print(text)
    with open(args.results, "a") as fh:
        fh.write("\n" + text + "\n")


if __name__ == "__main__":
    main()
