"""Decoder and envelope throughput on this machine (prints numbers; no pass/fail).

    .venv/bin/python bench/decoders.py [--n 200000]

Why: a gateway in a busy station hears thousands of advertisements a second; the decode path
(profile dispatch + iBeacon decode) and the envelope codec must stay far below one core.
"""

from __future__ import annotations

import argparse
import time

from edge_agent.decoders.ble import build_ibeacon_ad
from edge_agent.decoders.dispatch import FrameDecoder
from shouhu import wire
from shouhu.model import RawFrame, Record
from shouhu.profiles import load_profiles

UUID = "fda50693-a4e2-4fb1-afcf-c6eb07647825"


def bench_ble(n: int) -> float:
    decoder = FrameDecoder(load_profiles())
    frames = [
        RawFrame("ble0", 1_763_800_000_000 + i, build_ibeacon_ad(UUID, 1, i % 500), {"rssi": -70})
        for i in range(1000)
    ]
    t0 = time.perf_counter()
    for i in range(n):
        decoder.decode("ble", frames[i % 1000])
    return n / (time.perf_counter() - t0)


def bench_envelope(n: int, batch: int = 200) -> tuple[float, float]:
    recs = [
        Record(
            i,
            1_763_800_000_000 + i,
            "sighting",
            "amulet-ibeacon@1",
            f"ibeacon:{UUID.replace('-', '')}:1:{i % 500}",
            {"event": "update", "rssi": -70, "rssi_avg": -71.5, "count": 12},
        )
        for i in range(batch)
    ]
    rounds = max(1, n // batch)
    t0 = time.perf_counter()
    payload = b""
    for _ in range(rounds):
        payload = wire.encode_batch("gw-1", recs, sent=1_763_800_000_000)
    enc = rounds * batch / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for _ in range(rounds):
        wire.decode_batch(payload, topic_gw="gw-1")
    dec = rounds * batch / (time.perf_counter() - t0)
    return enc, dec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=200_000)
    args = ap.parse_args()
    print(f"ble decode (dispatch + iBeacon): {bench_ble(args.n):,.0f} frames/s")
    enc, dec = bench_envelope(args.n)
    print(f"envelope encode: {enc:,.0f} records/s; decode + validate: {dec:,.0f} records/s")


if __name__ == "__main__":
    main()
