"""Patrol rule: judge every check-in at a patrol box, and notice the boxes nobody visited.

Inputs: NFC ``tap`` records of patrol-box tags (``device`` = the box's tag key). The gateway that
delivers the tap is the patrol unit's handheld reader, so ``gw`` is the unit
(``PatrolRoute.unit``). NTAG 424 DNA taps carry ``picc_data`` and ``cmac``
(``clone_proof: true``) and are verified with the box's SDM keys (``collector.sun.verify_sun``).

Each check-in yields a ``Verdict`` (normal / abnormal with reasons) for the time series; an
abnormal one also raises ``patrol_abnormal`` (warning) to the route's contacts. Reasons:

- ``bad_mac``: the SUN MAC does not verify (cloned or forged tag); ``malformed_sun`` when the
  SUN fields cannot be read; ``not_clone_proof``: the box has keys but the tap has no SUN data.
- ``replay``: the SUN counter is not above the last accepted counter of that box.
- ``impossible_travel``: the unit's previous box is farther than ``max_speed_kmh`` allows
  (haversine distance over the time between the two taps).
- ``outside_route``: the box is on none of the unit's routes; ``outside_schedule``: the route has
  a schedule and the tap is outside every window.
- ``stay_too_short``: a second tap at the same box before ``min_stay_s`` (watch rule);
  ``watch_rule_not_met``: the unit moved on from a box with a watch rule after one tap.

``tick``: when a route's window closes, every box of the route that had no accepted check-in by
the route's unit inside that window gets a ``missed`` Verdict and a ``patrol_missed`` alert.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from collector.domain import PatrolBox, PatrolRoute
from collector.rules.actions import Action, RaiseAlert, StateDict, Verdict, VerdictValue
from collector.rules.registry_view import RegistryView
from collector.rules.schedule import in_windows, occurrences
from shouhu.exceptions import ShouhuError
from shouhu.model import Record

EARTH_RADIUS_KM = 6371.0088
# Reasons that mean the tap itself cannot be trusted: it does not count as a visit.
UNTRUSTED = frozenset({"bad_mac", "malformed_sun", "not_clone_proof", "replay"})


class SunVerdictLike(Protocol):
    """What ``collector.sun.verify_sun`` returns (``SunVerdict``, a frozen value)."""

    @property
    def uid(self) -> str: ...
    @property
    def counter(self) -> int: ...
    @property
    def valid_mac(self) -> bool: ...
    @property
    def replay(self) -> bool: ...
    @property
    def ok(self) -> bool: ...
    @property
    def reason(self) -> str: ...


# verify_sun(picc_data_hex, cmac_hex, meta_key, file_key, last_counter) -> SunVerdict
SunVerifier = Callable[[str, str, str, str, int], SunVerdictLike]


def default_verifier() -> SunVerifier | None:
    """``collector.sun.verify_sun``, imported lazily; None while that module is absent."""
    try:
        from collector.sun import verify_sun  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None
    return verify_sun  # type: ignore[no-any-return,unused-ignore]


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance between two WGS84 points."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


@dataclass(frozen=True, slots=True)
class PatrolConfig:
    default_max_speed_kmh: float = 60.0  # for taps outside any route of the unit
    keep_visits_s: int = 2 * 86400  # how long accepted check-ins are kept for missed-box checks


class PatrolRule:
    name = "patrol"

    def __init__(
        self, config: PatrolConfig, tz: str, verify_sun: SunVerifier | None = None
    ) -> None:
        self.config = config
        self.tz = tz
        self._verify = verify_sun
        self._counters: dict[str, int] = {}  # box id -> last accepted SUN counter (anti-replay)
        # unit (gw) -> last check-in {"box", "ts", "first_ts", "taps", "min_stay_s"}
        self._units: dict[str, dict[str, Any]] = {}
        self._visits: dict[str, dict[str, list[int]]] = {}  # route -> box -> accepted tap ts
        self._last_tick: int | None = None

    def handle(self, gw: str, record: Record, now_ms: int, reg: RegistryView) -> list[Action]:
        if record.kind != "tap":
            return []
        box = reg.patrol_box_by_device(record.device)
        if box is None:
            return []
        ts = record.ts
        reasons: list[str] = []
        data: dict[str, Any] = {"gw": gw, "device": record.device}
        reasons.extend(self._authenticity(box, record, data))

        unit_routes = [r for r in reg.routes_with_box(box.id) if r.unit == gw]
        in_schedule = [
            r for r in unit_routes if not r.schedule or in_windows(r.schedule, ts, self.tz)
        ]
        candidates = in_schedule or unit_routes
        route = candidates[0] if candidates else None
        if route is None:
            reasons.append("outside_route")
        elif not in_schedule:
            reasons.append("outside_schedule")

        trusted = not UNTRUSTED.intersection(reasons)
        reasons.extend(self._movement(gw, box, route, ts, reg, data, trusted))
        if route is not None and trusted:
            self._visits.setdefault(route.id, {}).setdefault(box.id, []).append(ts)

        verdict: VerdictValue = "abnormal" if reasons else "normal"
        out: list[Action] = [
            Verdict(
                box=box.id,
                route=route.id if route else None,
                unit=gw,
                ts=ts,
                verdict=verdict,
                reasons=tuple(reasons),
                data=data,
            )
        ]
        if reasons:
            contacts = route.contacts if route else _any_route_contacts(reg, box.id)
            out.append(
                RaiseAlert(
                    kind="patrol_abnormal",
                    key=f"{gw}:{box.id}:{ts}",
                    severity="warning",
                    title=f"Abnormal patrol check-in: {', '.join(reasons)}",
                    message=(
                        f"Check-in by unit {gw} at box {box.id}"
                        f"{' (' + box.location + ')' if box.location else ''}"
                        f" judged abnormal: {', '.join(reasons)}."
                    ),
                    subjects=(f"box:{box.id}",) + ((f"route:{route.id}",) if route else ()),
                    contacts=contacts,
                    data={**data, "box": box.id, "reasons": list(reasons), "ts": ts},
                )
            )
        return out

    def tick(self, now_ms: int, reg: RegistryView) -> list[Action]:
        last, self._last_tick = self._last_tick, now_ms
        if last is None or now_ms <= last:
            return []
        out: list[Action] = []
        for route in reg.all_routes():
            visits = self._visits.get(route.id, {})
            for start, end in occurrences(route.schedule, last, now_ms, self.tz):
                for box_id in route.boxes:
                    if any(start <= t <= end for t in visits.get(box_id, ())):
                        continue
                    out.append(
                        Verdict(
                            box=box_id,
                            route=route.id,
                            unit=route.unit,
                            ts=end,
                            verdict="missed",
                            reasons=("missed_checkpoint",),
                            data={"window_start": start, "window_end": end},
                        )
                    )
                    out.append(
                        RaiseAlert(
                            kind="patrol_missed",
                            key=f"{route.id}:{box_id}:{start}",
                            severity="warning",
                            title="Patrol checkpoint missed",
                            message=f"Unit {route.unit} did not check in at box {box_id} on route {route.id}.",
                            subjects=(f"box:{box_id}", f"route:{route.id}"),
                            contacts=route.contacts,
                            data={
                                "route": route.id,
                                "unit": route.unit,
                                "box": box_id,
                                "window_start": start,
                                "window_end": end,
                            },
                        )
                    )
        horizon = now_ms - self.config.keep_visits_s * 1000
        for boxes in self._visits.values():
            for box_id in list(boxes):
                boxes[box_id] = [t for t in boxes[box_id] if t >= horizon]
                if not boxes[box_id]:
                    del boxes[box_id]
        return out

    def to_state(self) -> StateDict:
        return {
            "counters": dict(self._counters),
            "units": {k: dict(v) for k, v in self._units.items()},
            "visits": {r: {b: list(ts) for b, ts in v.items()} for r, v in self._visits.items()},
            "last_tick": self._last_tick,
        }

    @classmethod
    def from_state(
        cls,
        config: PatrolConfig,
        tz: str,
        state: StateDict,
        verify_sun: SunVerifier | None = None,
    ) -> PatrolRule:
        rule = cls(config, tz, verify_sun)
        rule._counters = {k: int(v) for k, v in state.get("counters", {}).items()}
        rule._units = {k: dict(v) for k, v in state.get("units", {}).items()}
        rule._visits = {
            r: {b: [int(t) for t in ts] for b, ts in v.items()}
            for r, v in state.get("visits", {}).items()
        }
        rule._last_tick = state.get("last_tick")
        return rule

    # -- judgements -----------------------------------------------------------------------

    def _authenticity(self, box: PatrolBox, record: Record, data: dict[str, Any]) -> list[str]:
        clone_proof = record.data.get("clone_proof") is True
        data["clone_proof"] = clone_proof
        if not (box.sun_meta_key and box.sun_file_key):
            return []  # a UID-only box: accepted as it is, marked not clone-proof in the data
        picc, cmac = record.data.get("picc_data"), record.data.get("cmac")
        if not clone_proof or not isinstance(picc, str) or not isinstance(cmac, str):
            return ["not_clone_proof"]
        verify = self._verify if self._verify is not None else default_verifier()
        if verify is None:
            return ["sun_unavailable"]
        last = self._counters.get(box.id, -1)
        try:
            verdict = verify(picc, cmac, box.sun_meta_key, box.sun_file_key, last)
        except (ShouhuError, ValueError) as exc:
            data["sun_error"] = str(exc)[:200]
            return ["malformed_sun"]
        data["counter"] = verdict.counter
        if not verdict.valid_mac:
            return ["bad_mac"]
        if verdict.replay or verdict.counter <= last:
            return ["replay"]
        self._counters[box.id] = verdict.counter
        return []

    def _movement(
        self,
        gw: str,
        box: PatrolBox,
        route: PatrolRoute | None,
        ts: int,
        reg: RegistryView,
        data: dict[str, Any],
        trusted: bool,
    ) -> list[str]:
        """Watch rule and travel speed against the unit's previous check-in.

        An untrusted tap is judged but does not move the unit (a forged tag proves nothing).
        """
        reasons: list[str] = []
        prev = self._units.get(gw)
        min_stay = route.min_stay_s if route else 0
        if prev is not None and prev["box"] == box.id:
            if prev["min_stay_s"] and ts - prev["first_ts"] < prev["min_stay_s"] * 1000:
                reasons.append("stay_too_short")
            if trusted:
                prev["taps"] += 1
                prev["ts"] = ts
            return reasons
        if prev is not None:
            if prev["min_stay_s"] and prev["taps"] < 2:
                reasons.append("watch_rule_not_met")
                data["previous_box"] = prev["box"]
            speed = _speed_kmh(reg.patrol_box(prev["box"]), box, prev["ts"], ts)
            limit = route.max_speed_kmh if route else self.config.default_max_speed_kmh
            if speed is not None:
                data["speed_kmh"] = round(speed, 1) if math.isfinite(speed) else None
                if speed > limit:
                    reasons.append("impossible_travel")
        if trusted:
            self._units[gw] = {
                "box": box.id,
                "ts": ts,
                "first_ts": ts,
                "taps": 1,
                "min_stay_s": min_stay,
            }
        return reasons


def _speed_kmh(a: PatrolBox | None, b: PatrolBox, ts_a: int, ts_b: int) -> float | None:
    """Speed needed between two boxes; None when a position is unknown; inf for no time."""
    if a is None or None in (a.lat, a.lon, b.lat, b.lon):
        return None
    assert a.lat is not None and a.lon is not None and b.lat is not None and b.lon is not None
    km = haversine_km(a.lat, a.lon, b.lat, b.lon)
    hours = (ts_b - ts_a) / 3_600_000
    if hours <= 0:
        return math.inf if km > 0.05 else 0.0
    return km / hours


def _any_route_contacts(reg: RegistryView, box_id: str) -> tuple[Any, ...]:
    for r in reg.routes_with_box(box_id):
        if r.contacts:
            return r.contacts
    return ()
