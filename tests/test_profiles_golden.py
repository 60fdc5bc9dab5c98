"""Every shipped device profile decodes its own golden frames (whatever its transport).

New profiles are covered automatically: the cases come from ``load_profiles()``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from edge_agent.decoders import get_decoder
from shouhu.model import RawFrame, Reading
from shouhu.profiles import GoldenFrame, Profile, load_profiles

GOLDEN_TS = 1_763_800_000_001
SHIPPED = load_profiles()


def is_subset(expected: Any, got: Any) -> bool:
    """``expected`` is contained in ``got``: mappings by key (recursively), others by equality."""
    if isinstance(expected, Mapping):
        return isinstance(got, Mapping) and all(
            key in got and is_subset(value, got[key]) for key, value in expected.items()
        )
    if isinstance(expected, bool) or isinstance(got, bool):
        return expected is got  # True must not match 1
    return bool(expected == got)


def reading_view(reading: Reading) -> dict[str, Any]:
    return {"kind": reading.kind, "device": reading.device, "data": dict(reading.data)}


def golden_cases() -> list[Any]:
    return [
        pytest.param(profile, golden, id=f"{profile.id}:{golden.name}")
        for profile in SHIPPED.values()
        for golden in profile.golden
    ]


def test_shipped_profiles_load_and_have_goldens() -> None:
    assert SHIPPED, "no device profiles shipped"
    for profile in SHIPPED.values():
        assert profile.golden, f"{profile.id} ships no golden frames"
        assert any(g.expect for g in profile.golden), f"{profile.id}: no golden frame matches"


@pytest.mark.parametrize(("profile", "golden"), golden_cases())
def test_golden_frame_decodes(profile: Profile, golden: GoldenFrame) -> None:
    frame = RawFrame(
        source=f"golden-{profile.transport}", ts=GOLDEN_TS, payload=golden.payload, meta=golden.meta
    )
    readings = list(get_decoder(profile.decoder)(frame, profile))
    got = [reading_view(r) for r in readings]
    assert len(got) == len(golden.expect), got
    for expected, reading, view in zip(golden.expect, readings, got, strict=True):
        assert is_subset(expected, view), f"expected {expected}, got {view}"
        assert reading.ts == GOLDEN_TS
        assert reading.profile == profile.ref
        assert reading.kind in profile.readings


def test_subset_match_can_fail() -> None:
    got = {"kind": "alarm", "device": "d", "data": {"event": "alarm", "ok": True, "n": 1}}
    assert is_subset({"data": {"event": "alarm"}}, got)
    assert not is_subset({"data": {"event": "test"}}, got)
    assert not is_subset({"data": {"missing": None}}, got)
    assert not is_subset({"data": {"ok": 1}}, got)
    assert not is_subset({"data": {"n": True}}, got)
