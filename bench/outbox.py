"""Outbox throughput and memory: durable appends, pending reads and PUBACK deletes.

    .venv/bin/python bench/outbox.py [--n 20000] [--batch 50]

Why: every reading is committed to SQLite (WAL, synchronous=FULL) before it is published, so
the outbox's commit rate bounds what one gateway can accept. Batches are what the agent's
worker writes per transaction.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

from edge_agent.outbox import Outbox
from shouhu.model import Reading


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--batch", type=int, default=50)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        box = Outbox(str(Path(tmp) / "outbox.sqlite"), max_records=1_000_000)
        reading = Reading(
            1_763_800_000_000,
            "sighting",
            "amulet-ibeacon@1",
            "ibeacon:fda50693a4e24fb1afcfc6eb07647825:10001:1",
            {"event": "update", "rssi": -70, "rssi_avg": -71.2, "count": 30},
        )
        t0 = time.perf_counter()
        for _ in range(args.n // args.batch):
            box.append([reading] * args.batch)
        append_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        drained = 0
        while True:
            rows = box.pending(500)
            if not rows:
                break
            box.delete([r.seq for r in rows])
            drained += len(rows)
        drain_s = time.perf_counter() - t0
        box.close()
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"outbox append: {args.n / append_s:,.0f} records/s in batches of {args.batch} "
        f"({args.n // args.batch / append_s:,.0f} fsync'd transactions/s)"
    )
    print(f"outbox pending+delete: {drained / drain_s:,.0f} records/s; peak RSS {rss_mb:.0f} MB")


if __name__ == "__main__":
    main()
