"""Wanderer rule: a person with dementia leaves safety, is not home in time, or is missing.

Inputs: BLE ``sighting`` records of amulets (``enter``/``update``/``exit`` with ``rssi_avg``),
gateway status (to tell "left home" from "home gateway is down"), and the clock (``tick``).

Decisions, per wearer:
- *outside* (``wanderer``, critical): during the wearer's risk schedule (always, when it is
  empty) gateways outside the safe zones agree: ``min_sightings`` sightings from at least
  ``min_gateways`` distinct non-safe gateways within ``window_s``, or one non-safe gateway
  hearing a strong signal (``rssi_avg >= strong_rssi``) for ``strong_updates`` updates in a row.
  Hysteresis: resolved only after the wearer has been back in a safe zone for ``resolve_after_s``
  without a non-safe sighting in between.
- *left home* (``wanderer_left_home``, warning): a home gateway reported ``exit`` during the risk
  schedule and no safe gateway has seen the wearer for ``left_home_after_s``.
- *not home by* (``wanderer_not_home``, warning): at the wearer's ``home_by`` time the wearer is
  not present at a home gateway (seen there within ``home_presence_s`` and no exit since).
- If any home gateway is offline when one of the two checks above would fire, the rule raises
  ``wanderer_home_gateway_offline`` (warning) instead: absence is then not evidence.
- *missing*: while the registry marks the wearer missing, every sighting becomes a ``footprint``
  Notice to the wearer's contacts with the gateway's position.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from collector.domain import Gateway, Wearer
from collector.rules.actions import (
    Action,
    Notice,
    RaiseAlert,
    Rejected,
    ResolveAlert,
    StateDict,
    number,
)
from collector.rules.registry_view import RegistryView
from collector.rules.schedule import deadline_today, in_windows, local_day
from shouhu.model import Record

SIGHTING_EVENTS = frozenset({"enter", "update", "exit"})


@dataclass(frozen=True, slots=True)
class WandererConfig:
    window_s: int = 300
    min_sightings: int = 3
    min_gateways: int = 2
    strong_rssi: float = -65.0
    strong_updates: int = 3
    resolve_after_s: int = 300
    left_home_after_s: int = 600
    home_presence_s: int = 900


@dataclass(slots=True)
class _WearerState:
    """Per-wearer memory; everything here is persisted (``to_dict``)."""

    since: int  # first time the rule knew this wearer: deadlines before it are not judged
    recent: list[list[Any]] = field(default_factory=list)  # [ts, gw] non-safe sightings
    strong: dict[str, int] = field(default_factory=dict)  # gw -> strong updates in a row
    outside: bool = False
    safe_since: int | None = None
    last_safe: int | None = None
    last_home: int | None = None  # last enter/update at a home gateway
    home_exit: int | None = None  # exit at a home gateway not yet followed by a safe sighting
    left_open: bool = False
    not_home_open: bool = False
    home_by_day: str | None = None  # the local day whose home_by deadline was judged
    offline_open: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "since": self.since,
            "recent": [list(r) for r in self.recent],
            "strong": dict(self.strong),
            "outside": self.outside,
            "safe_since": self.safe_since,
            "last_safe": self.last_safe,
            "last_home": self.last_home,
            "home_exit": self.home_exit,
            "left_open": self.left_open,
            "not_home_open": self.not_home_open,
            "home_by_day": self.home_by_day,
            "offline_open": self.offline_open,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> _WearerState:
        return cls(
            since=int(d["since"]),
            recent=[list(r) for r in d.get("recent", [])],
            strong={str(k): int(v) for k, v in d.get("strong", {}).items()},
            outside=bool(d.get("outside", False)),
            safe_since=d.get("safe_since"),
            last_safe=d.get("last_safe"),
            last_home=d.get("last_home"),
            home_exit=d.get("home_exit"),
            left_open=bool(d.get("left_open", False)),
            not_home_open=bool(d.get("not_home_open", False)),
            home_by_day=d.get("home_by_day"),
            offline_open=bool(d.get("offline_open", False)),
        )


def _subject(w: Wearer) -> tuple[str, ...]:
    return (f"wearer:{w.id}",)


def _where(gateway: Gateway | None, gw: str) -> dict[str, Any]:
    """Public position data of a gateway (ids and coordinates only)."""
    if gateway is None:
        return {"gw": gw}
    return {
        "gw": gw,
        "site": gateway.site,
        "zone": gateway.zone,
        "lat": gateway.lat,
        "lon": gateway.lon,
    }


class WandererRule:
    name = "wanderer"

    def __init__(self, config: WandererConfig, tz: str) -> None:
        self.config = config
        self.tz = tz
        self._wearers: dict[str, _WearerState] = {}
        self._offline: set[str] = set()  # gateways known to be offline

    # -- inputs ---------------------------------------------------------------------------

    def handle(self, gw: str, record: Record, now_ms: int, reg: RegistryView) -> list[Action]:
        if record.kind != "sighting":
            return []
        w = reg.wearer_by_device(record.device)
        if w is None:
            return []
        event = record.data.get("event")
        if event not in SIGHTING_EVENTS:
            return [Rejected(self.name, gw, record.seq, f"sighting event {event!r} unknown")]
        st = self._state(w.id, now_ms)
        gateway = reg.gateway(gw)
        ts = record.ts
        out: list[Action] = []
        if w.missing:
            out.append(self._footprint(w, gw, gateway, record))
        is_home = gw in w.home_gateways
        safe = is_home or (
            gateway is not None and bool(gateway.zone) and gateway.zone in w.safe_zones
        )
        if event == "exit":
            if is_home and (st.last_home is None or ts >= st.last_home):
                st.home_exit = ts
            return out
        if safe:
            st.recent.clear()
            st.strong.clear()
            st.last_safe = max(ts, st.last_safe or ts)
            st.home_exit = None
            if st.outside and st.safe_since is None:
                st.safe_since = ts
            if st.left_open:
                st.left_open = False
                out.append(ResolveAlert("wanderer_left_home", w.id, "seen in a safe zone"))
            if is_home:
                st.last_home = max(ts, st.last_home or ts)
                if st.not_home_open:
                    st.not_home_open = False
                    out.append(ResolveAlert("wanderer_not_home", w.id, "seen at home"))
        else:
            st.safe_since = None
            out.extend(self._outside_sighting(w, st, gw, gateway, record))
        out.extend(self._maybe_back(w, st, now_ms))
        return out

    def on_status(self, gw: str, state: str, now_ms: int, reg: RegistryView) -> list[Action]:
        if state == "offline":
            self._offline.add(gw)
            return []
        self._offline.discard(gw)
        return self._resolve_offline(reg, now_ms)

    def tick(self, now_ms: int, reg: RegistryView) -> list[Action]:
        out: list[Action] = []
        c = self.config
        for w in reg.all_wearers():
            st = self._state(w.id, now_ms)
            out.extend(self._maybe_back(w, st, now_ms))
            at_risk = not w.risk_schedule or in_windows(w.risk_schedule, now_ms, self.tz)
            if (
                st.home_exit is not None
                and not st.left_open
                and now_ms - st.home_exit >= c.left_home_after_s * 1000
                and at_risk
            ):
                st.left_open = True
                out.append(self._absent(w, st, "wanderer_left_home", now_ms))
            if w.home_by is not None:
                day = local_day(now_ms, self.tz)
                deadline = deadline_today(w.home_by, now_ms, self.tz)
                if now_ms >= deadline and st.home_by_day != day:
                    st.home_by_day = day
                    present = (
                        st.last_home is not None
                        and st.home_exit is None
                        and st.last_home >= deadline - c.home_presence_s * 1000
                    )
                    if deadline >= st.since and not present and not st.not_home_open:
                        st.not_home_open = True
                        out.append(self._absent(w, st, "wanderer_not_home", now_ms))
        out.extend(self._resolve_offline(reg, now_ms))
        return out

    # -- state ----------------------------------------------------------------------------

    def to_state(self) -> StateDict:
        return {
            "offline": sorted(self._offline),
            "wearers": {k: v.to_dict() for k, v in sorted(self._wearers.items())},
        }

    @classmethod
    def from_state(cls, config: WandererConfig, tz: str, state: StateDict) -> WandererRule:
        rule = cls(config, tz)
        rule._offline = set(state.get("offline", []))
        rule._wearers = {k: _WearerState.from_dict(v) for k, v in state.get("wearers", {}).items()}
        return rule

    # -- decisions ------------------------------------------------------------------------

    def _state(self, wearer_id: str, now_ms: int) -> _WearerState:
        st = self._wearers.get(wearer_id)
        if st is None:
            st = self._wearers[wearer_id] = _WearerState(since=now_ms)
        return st

    def _outside_sighting(
        self, w: Wearer, st: _WearerState, gw: str, gateway: Gateway | None, record: Record
    ) -> list[Action]:
        c = self.config
        ts = record.ts
        rssi_avg = number(record.data.get("rssi_avg"))
        if st.outside:
            # Refresh the open alert with the latest position (the alert book de-duplicates).
            return [self._outside_alert(w, gw, gateway, "still outside", rssi_avg)]
        if w.risk_schedule and not in_windows(w.risk_schedule, ts, self.tz):
            return []
        st.recent.append([ts, gw])
        st.recent = [r for r in st.recent if r[0] > ts - c.window_s * 1000]
        if rssi_avg is not None and rssi_avg >= c.strong_rssi:
            st.strong[gw] = st.strong.get(gw, 0) + 1
        else:
            st.strong[gw] = 0
        distinct = {r[1] for r in st.recent}
        agreed = len(st.recent) >= c.min_sightings and len(distinct) >= c.min_gateways
        strong = st.strong.get(gw, 0) >= c.strong_updates
        if not (agreed or strong):
            return []
        how = (
            f"{len(st.recent)} sightings on {len(distinct)} gateways"
            if agreed
            else f"strong signal at one gateway for {c.strong_updates} updates"
        )
        st.outside = True
        st.recent.clear()
        st.strong.clear()
        return [self._outside_alert(w, gw, gateway, how, rssi_avg)]

    def _outside_alert(
        self, w: Wearer, gw: str, gateway: Gateway | None, how: str, rssi_avg: float | None
    ) -> RaiseAlert:
        place = gateway.site if gateway is not None else gw
        return RaiseAlert(
            kind="wanderer",
            key=w.id,
            severity="critical",
            title="Wanderer: outside the safe zones during the risk schedule",
            message=f"{w.name} is outside the safe zones, last seen near {place} ({how}).",
            subjects=_subject(w),
            contacts=w.contacts,
            data={**_where(gateway, gw), "rssi_avg": rssi_avg, "decided_by": how},
        )

    def _maybe_back(self, w: Wearer, st: _WearerState, now_ms: int) -> list[Action]:
        if (
            st.outside
            and st.safe_since is not None
            and now_ms - st.safe_since >= self.config.resolve_after_s * 1000
        ):
            st.outside = False
            st.safe_since = None
            return [ResolveAlert("wanderer", w.id, "back in a safe zone")]
        return []

    def _absent(self, w: Wearer, st: _WearerState, kind: str, now_ms: int) -> RaiseAlert:
        """A left-home / not-home alert, or "home gateway offline" when absence proves nothing."""
        down = sorted(g for g in w.home_gateways if g in self._offline)
        if down:
            st.offline_open = True
            return RaiseAlert(
                kind="wanderer_home_gateway_offline",
                key=w.id,
                severity="warning",
                title="Home gateway offline: cannot tell whether the wearer is home",
                message=f"The home gateway of {w.name} is offline; presence at home is unknown.",
                subjects=_subject(w),
                contacts=w.contacts,
                data={"gateways": down, "instead_of": kind},
            )
        if kind == "wanderer_left_home":
            title = "Wanderer left home during the risk schedule"
            message = f"{w.name} left home and has not been seen in a safe zone since."
        else:
            title = "Wearer not home by the expected time"
            message = f"{w.name} was not seen at home by {w.home_by}."
        return RaiseAlert(
            kind=kind,
            key=w.id,
            severity="warning",
            title=title,
            message=message,
            subjects=_subject(w),
            contacts=w.contacts,
            data={"last_safe": st.last_safe, "last_home": st.last_home, "home_exit": st.home_exit},
        )

    def _resolve_offline(self, reg: RegistryView, now_ms: int) -> list[Action]:
        out: list[Action] = []
        for w in reg.all_wearers():
            st = self._wearers.get(w.id)
            if st is not None and st.offline_open and not (w.home_gateways & self._offline):
                st.offline_open = False
                out.append(
                    ResolveAlert("wanderer_home_gateway_offline", w.id, "home gateways online")
                )
        return out

    def _footprint(self, w: Wearer, gw: str, gateway: Gateway | None, record: Record) -> Notice:
        place = gateway.site if gateway is not None else gw
        where = _where(gateway, gw)
        return Notice(
            kind="footprint",
            contacts=w.contacts,
            title="Footprint of a missing person",
            message=(
                f"{w.name} (reported missing) was seen near {place}"
                f" at lat {where.get('lat')}, lon {where.get('lon')}."
            ),
            data={
                **where,
                "subject": f"wearer:{w.id}",
                "ts": record.ts,
                "event": record.data.get("event"),
                "rssi_avg": number(record.data.get("rssi_avg")),
            },
        )
