"""School rule: tell guardians when a child arrives at and leaves school; notice who did not come.

Inputs: NFC ``tap`` records of student cards (``device`` = ``card:<keyed hash>``) heard by one of
the school's gateways; the clock for the "not arrived by" check.

- The first tap of the (local) day is an arrival, the next a departure, and so on alternating;
  taps within ``debounce_s`` of the previous one are a double tap and ignored. Each becomes a
  ``school_arrival`` / ``school_departure`` Notice to the student's guardians.
- ``school_not_arrived`` (warning, key = student id): only for schools with ``not_arrived_by``,
  on their school days: at that time, every student of the school without an arrival today.
  Resolved by a late arrival. Deadlines before the rule started are not judged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from collector.domain import School, Student
from collector.rules.actions import Action, Notice, RaiseAlert, ResolveAlert, StateDict
from collector.rules.registry_view import RegistryView
from collector.rules.schedule import deadline_today, local, local_day
from shouhu.model import Record


@dataclass(frozen=True, slots=True)
class SchoolConfig:
    debounce_s: int = 60


class SchoolRule:
    name = "school"

    def __init__(self, config: SchoolConfig, tz: str) -> None:
        self.config = config
        self.tz = tz
        self._since: int | None = None  # first instant the rule saw: earlier deadlines not judged
        # student id -> {"day", "inside", "last", "arrived", "alert_open"}
        self._students: dict[str, dict[str, Any]] = {}
        self._judged: dict[str, str] = {}  # school id -> local day whose deadline was judged

    def handle(self, gw: str, record: Record, now_ms: int, reg: RegistryView) -> list[Action]:
        if self._since is None:
            self._since = now_ms
        if record.kind != "tap":
            return []
        student = reg.student_by_card(record.device)
        if student is None:
            return []
        school = reg.school(student.school)
        if school is None or gw not in school.gateways:
            return []
        ts = record.ts
        day = local_day(ts, self.tz)
        st = self._students.get(student.id)
        if st is None or st["day"] != day:
            open_ = bool(st and st["alert_open"])
            st = self._students[student.id] = {
                "day": day,
                "inside": False,
                "last": None,
                "arrived": None,
                "alert_open": open_,
            }
        if st["last"] is not None and abs(ts - st["last"]) < self.config.debounce_s * 1000:
            return []
        st["last"] = ts
        st["inside"] = not st["inside"]
        out: list[Action] = []
        if st["inside"]:
            if st["arrived"] is None:
                st["arrived"] = ts
            out.append(self._notice("school_arrival", "arrived at", student, school, gw, ts))
            if st["alert_open"]:
                st["alert_open"] = False
                out.append(ResolveAlert("school_not_arrived", student.id, "arrived late"))
        else:
            out.append(self._notice("school_departure", "left", student, school, gw, ts))
        return out

    def tick(self, now_ms: int, reg: RegistryView) -> list[Action]:
        if self._since is None:
            self._since = now_ms
        out: list[Action] = []
        day = local_day(now_ms, self.tz)
        weekday = local(now_ms, self.tz).weekday()
        for school in reg.all_schools():
            if school.not_arrived_by is None or weekday not in school.days:
                continue
            deadline = deadline_today(school.not_arrived_by, now_ms, self.tz)
            if now_ms < deadline or self._judged.get(school.id) == day:
                continue
            self._judged[school.id] = day
            if deadline < self._since:
                continue
            for student in reg.students_of(school.id):
                st = self._students.get(student.id)
                if st is not None and st["day"] == day and st["arrived"] is not None:
                    continue
                if st is None or st["day"] != day:
                    open_ = bool(st and st["alert_open"])
                    st = self._students[student.id] = {
                        "day": day,
                        "inside": False,
                        "last": None,
                        "arrived": None,
                        "alert_open": open_,
                    }
                st["alert_open"] = True
                out.append(
                    RaiseAlert(
                        kind="school_not_arrived",
                        key=student.id,
                        severity="warning",
                        title="Student not arrived at school",
                        message=f"{student.name} had not arrived at {school.name} by {school.not_arrived_by}.",
                        subjects=(f"student:{student.id}", f"school:{school.id}"),
                        contacts=student.guardians,
                        data={"student": student.id, "school": school.id, "deadline": deadline},
                    )
                )
        return out

    def to_state(self) -> StateDict:
        return {
            "since": self._since,
            "students": {k: dict(v) for k, v in self._students.items()},
            "judged": dict(self._judged),
        }

    @classmethod
    def from_state(cls, config: SchoolConfig, tz: str, state: StateDict) -> SchoolRule:
        rule = cls(config, tz)
        rule._since = state.get("since")
        rule._students = {k: dict(v) for k, v in state.get("students", {}).items()}
        rule._judged = {k: str(v) for k, v in state.get("judged", {}).items()}
        return rule

    def _notice(
        self, kind: str, verb: str, student: Student, school: School, gw: str, ts: int
    ) -> Notice:
        hhmm = local(ts, self.tz).strftime("%H:%M")
        return Notice(
            kind=kind,
            contacts=student.guardians,
            title=f"Student {verb} school",
            message=f"{student.name} {verb} {school.name} at {hhmm}.",
            data={"student": student.id, "school": school.id, "gw": gw, "ts": ts},
        )
