"""Patrol rule: every check-in judged, with reasons; missed checkpoints when a window closes.

``collector.sun`` (NTAG 424 SUN verification) is another part; here a small keyed tag stands in
for it behind the same signature: the tag's counter and an HMAC over it, so forged, replayed
and genuine taps can be made at will.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass

from test_rules_timeline import (
    ALL_DAYS,
    MIN,
    TZ,
    Step,
    assert_restart_safe,
    heard,
    kinds,
    rec,
    t,
    tick,
)

from collector.domain import Contact, PatrolBox, PatrolRoute, Window
from collector.rules import EngineConfig, StaticRegistry
from collector.rules.actions import RaiseAlert, Verdict
from collector.rules.gateway import GatewayConfig
from collector.rules.patrol import haversine_km


@dataclass(frozen=True)
class TagVerdict:
    uid: str
    counter: int
    valid_mac: bool
    replay: bool
    ok: bool
    reason: str


def tag_mac(file_key: str, picc: str) -> str:
    return hmac.new(bytes.fromhex(file_key), bytes.fromhex(picc), hashlib.sha256).hexdigest()[:16]


def verify_tag(picc: str, cmac: str, meta_key: str, file_key: str, last: int) -> TagVerdict:
    raw = bytes.fromhex(picc)  # ValueError on bad hex: the rule reports malformed_sun
    uid, counter = raw[:7].hex(), int.from_bytes(raw[7:10], "little")
    valid = hmac.compare_digest(tag_mac(file_key, picc), cmac)
    replay = valid and counter <= last
    return TagVerdict(uid, counter, valid, replay, valid and not replay, "")


META, FILE = "00" * 16, "11" * 16
UNIT = "gw-unit-7"
DESK = Contact("c-pd", "Police desk 4", "json://localhost/desk", "police_desk", 0)
B1 = PatrolBox("b1", "nfc:04a1b2c3d4e5f6", 31.2304, 121.4737, "north gate", META, FILE)
B2 = PatrolBox("b2", "nfc:04a1b2c3d4e5f7", 31.2394, 121.4737, "river steps", META, FILE)  # 1 km
B3 = PatrolBox("b3", "nfc:04a1b2c3d4e5f8", 31.4100, 121.4737, "far depot", META, FILE)  # 20 km
B4 = PatrolBox("b4", "nfc:04a1b2c3d4e5f9", 31.2304, 121.4837)  # UID-only tag, no keys
ROUTE = PatrolRoute(
    "r1", UNIT, ("b1", "b2", "b4"), (Window(ALL_DAYS, "22:00", "02:00"),), 120, 60.0, (DESK,)
)
REG = StaticRegistry(boxes=[B1, B2, B3, B4], routes=[ROUTE])
CONFIG = EngineConfig(tz=TZ, gateway=GatewayConfig(health_interval_s=86400))


def tap(box: PatrolBox, counter: int, ts: int, *, forged: bool = False, gw: str = UNIT) -> Step:
    picc = bytes.fromhex(box.device[4:]).hex() + counter.to_bytes(3, "little").hex()
    mac = tag_mac("22" * 16 if forged else FILE, picc)
    data = {"picc_data": picc, "cmac": mac, "clone_proof": True, "counter": counter}
    return heard(gw, rec("tap", box.device, data, ts, "patrol-ntag424@1"))


def verdicts(out: Sequence[Sequence[object]]) -> list[tuple[str, str, tuple[str, ...]]]:
    return [(v.box, v.verdict, v.reasons) for o in out for v in o if isinstance(v, Verdict)]


def test_haversine_one_km_north() -> None:
    assert abs(haversine_km(B1.lat, B1.lon, B2.lat, B2.lon) - 1.0) < 0.01  # type: ignore[arg-type]


def test_a_good_round_then_every_kind_of_wrong() -> None:
    steps = [
        tap(B1, 1, t("22:10")),
        tap(B1, 2, t("22:13")),  # watch rule: second tap 3 min later (>= 120 s)
        tap(B2, 5, t("22:20")),  # 1 km in 7 min
        tap(B2, 5, t("22:21")),  # the same counter again: replayed (and too short a stay)
        tap(B2, 6, t("22:24"), forged=True),  # wrong key: bad MAC
        tap(B2, 7, t("22:25")),  # genuine second tap
        tap(B3, 1, t("22:30")),  # 20 km in 5 min, not on the route
    ]
    out = assert_restart_safe(CONFIG, REG, steps, verify_tag)
    assert verdicts(out) == [
        ("b1", "normal", ()),
        ("b1", "normal", ()),
        ("b2", "normal", ()),
        ("b2", "abnormal", ("replay", "stay_too_short")),
        ("b2", "abnormal", ("bad_mac",)),  # 4 min after the first tap: stay long enough
        ("b2", "normal", ()),
        ("b3", "abnormal", ("outside_route", "impossible_travel")),
    ]
    assert [len(o) for o in out[:3]] == [1, 1, 1]  # a normal check-in: only its verdict
    alert = out[3][1]
    assert isinstance(alert, RaiseAlert) and alert.kind == "patrol_abnormal"
    assert alert.contacts == (DESK,) and alert.data["reasons"] == ["replay", "stay_too_short"]
    last = out[6][0]
    assert isinstance(last, Verdict) and last.route is None and last.data["speed_kmh"] > 200


def test_watch_rule_not_met_and_outside_schedule() -> None:
    steps = [
        tap(B1, 10, t("22:10")),
        tap(B2, 11, t("22:20")),  # left b1 after one tap
        tap(B1, 12, t("12:00", day=1)),  # midday: route's window is 22:00-02:00
    ]
    out = assert_restart_safe(CONFIG, REG, steps, verify_tag)
    assert verdicts(out) == [
        ("b1", "normal", ()),
        ("b2", "abnormal", ("watch_rule_not_met",)),
        ("b1", "abnormal", ("outside_schedule", "watch_rule_not_met")),
    ]
    v = out[1][0]
    assert isinstance(v, Verdict) and v.data["previous_box"] == "b1"


def test_tag_authenticity_paths() -> None:
    uid_only = heard(UNIT, rec("tap", B1.device, {"clone_proof": False}, t("22:10")))
    bad_hex = heard(
        UNIT,
        rec("tap", B2.device, {"picc_data": "zz", "cmac": "00", "clone_proof": True}, t("22:11")),
    )
    plain_box = heard(UNIT, rec("tap", B4.device, {"clone_proof": False}, t("22:40")))
    out = assert_restart_safe(CONFIG, REG, [uid_only, bad_hex, plain_box], verify_tag)
    assert [v[1:] for v in verdicts(out)] == [
        ("abnormal", ("not_clone_proof",)),
        ("abnormal", ("malformed_sun",)),
        ("normal", ()),  # a box without keys accepts its UID-only tag
    ]


def test_missed_checkpoints_when_the_window_closes() -> None:
    steps = [
        tick(t("21:59")),
        tap(B1, 1, t("22:10")),
        tap(B1, 2, t("22:15")),
        tap(B2, 3, t("23:59"), forged=True),  # a forged tap is no visit
        tick(t("01:59", day=1)),
        tick(t("02:01", day=1)),
        tick(t("02:30", day=1)),
    ]
    out = assert_restart_safe(CONFIG, REG, steps, verify_tag)
    assert out[4] == []
    missed = [a for a in out[5] if isinstance(a, Verdict)]
    assert [(v.box, v.verdict, v.reasons) for v in missed] == [
        ("b2", "missed", ("missed_checkpoint",)),
        ("b4", "missed", ("missed_checkpoint",)),
    ]
    assert missed[0].ts == t("02:00", day=1)
    alerts = [a for a in out[5] if isinstance(a, RaiseAlert)]
    assert [a.key for a in alerts] == [f"r1:b2:{t('22:00')}", f"r1:b4:{t('22:00')}"]
    assert out[6] == []


def test_taps_from_another_unit_are_outside_its_route() -> None:
    out = assert_restart_safe(CONFIG, REG, [tap(B1, 1, t("22:10"), gw="gw-unit-9")], verify_tag)
    assert verdicts(out) == [("b1", "abnormal", ("outside_route",))]
    assert kinds(out[0])[1] == ("RaiseAlert", "patrol_abnormal")
    assert out[0][1].contacts == (DESK,)  # type: ignore[union-attr]
    assert MIN == 60_000
