"""The registry lookups the rules need, as a Protocol, and an in-memory snapshot of it.

The rules never query a database: the collector hands them a ``RegistryView`` (a snapshot taken
from the registry database, refreshed when the registry changes). ``StaticRegistry`` is that
snapshot, built from lists of domain values; tests build one directly.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from collector.domain import (
    Aed,
    Gateway,
    Household,
    PatrolBox,
    PatrolRoute,
    School,
    SmokeAlarm,
    Student,
    Wearer,
)


class RegistryView(Protocol):
    def gateway(self, gw: str) -> Gateway | None: ...
    def all_gateways(self) -> tuple[Gateway, ...]: ...
    def wearer_by_device(self, device: str) -> Wearer | None: ...
    def all_wearers(self) -> tuple[Wearer, ...]: ...
    def aed_by_device(self, device: str) -> Aed | None: ...
    def all_aeds(self) -> tuple[Aed, ...]: ...
    def household(self, household_id: str) -> Household | None: ...
    def household_of_alarm(self, device: str) -> tuple[Household, SmokeAlarm] | None: ...
    def households(self) -> tuple[Household, ...]: ...
    def patrol_box(self, box_id: str) -> PatrolBox | None: ...
    def patrol_box_by_device(self, device: str) -> PatrolBox | None: ...
    def routes_with_box(self, box_id: str) -> tuple[PatrolRoute, ...]: ...
    def route(self, route_id: str) -> PatrolRoute | None: ...
    def all_routes(self) -> tuple[PatrolRoute, ...]: ...
    def student_by_card(self, card: str) -> Student | None: ...
    def students_of(self, school_id: str) -> tuple[Student, ...]: ...
    def school(self, school_id: str) -> School | None: ...
    def all_schools(self) -> tuple[School, ...]: ...


class StaticRegistry:
    """An immutable in-memory ``RegistryView`` indexed by id and device key."""

    def __init__(
        self,
        *,
        gateways: Iterable[Gateway] = (),
        wearers: Iterable[Wearer] = (),
        aeds: Iterable[Aed] = (),
        households: Iterable[Household] = (),
        boxes: Iterable[PatrolBox] = (),
        routes: Iterable[PatrolRoute] = (),
        schools: Iterable[School] = (),
        students: Iterable[Student] = (),
    ) -> None:
        self._gateways = {g.id: g for g in gateways}
        self._wearers = tuple(wearers)
        self._wearer_by_device = {w.device: w for w in self._wearers}
        self._aeds = tuple(aeds)
        self._aed_by_device = {a.device: a for a in self._aeds}
        self._households = {h.id: h for h in households}
        self._alarm_index = {a.device: (h, a) for h in self._households.values() for a in h.alarms}
        self._boxes = {b.id: b for b in boxes}
        self._box_by_device = {b.device: b for b in self._boxes.values()}
        self._routes = {r.id: r for r in routes}
        self._schools = {s.id: s for s in schools}
        self._students = tuple(students)
        self._student_by_card = {s.card: s for s in self._students}

    def gateway(self, gw: str) -> Gateway | None:
        return self._gateways.get(gw)

    def all_gateways(self) -> tuple[Gateway, ...]:
        return tuple(self._gateways.values())

    def wearer_by_device(self, device: str) -> Wearer | None:
        return self._wearer_by_device.get(device)

    def all_wearers(self) -> tuple[Wearer, ...]:
        return self._wearers

    def aed_by_device(self, device: str) -> Aed | None:
        return self._aed_by_device.get(device)

    def all_aeds(self) -> tuple[Aed, ...]:
        return self._aeds

    def household(self, household_id: str) -> Household | None:
        return self._households.get(household_id)

    def household_of_alarm(self, device: str) -> tuple[Household, SmokeAlarm] | None:
        return self._alarm_index.get(device)

    def households(self) -> tuple[Household, ...]:
        return tuple(self._households.values())

    def patrol_box(self, box_id: str) -> PatrolBox | None:
        return self._boxes.get(box_id)

    def patrol_box_by_device(self, device: str) -> PatrolBox | None:
        return self._box_by_device.get(device)

    def routes_with_box(self, box_id: str) -> tuple[PatrolRoute, ...]:
        return tuple(r for r in self._routes.values() if box_id in r.boxes)

    def route(self, route_id: str) -> PatrolRoute | None:
        return self._routes.get(route_id)

    def all_routes(self) -> tuple[PatrolRoute, ...]:
        return tuple(self._routes.values())

    def student_by_card(self, card: str) -> Student | None:
        return self._student_by_card.get(card)

    def students_of(self, school_id: str) -> tuple[Student, ...]:
        return tuple(s for s in self._students if s.school == school_id)

    def school(self, school_id: str) -> School | None:
        return self._schools.get(school_id)

    def all_schools(self) -> tuple[School, ...]:
        return tuple(self._schools.values())
