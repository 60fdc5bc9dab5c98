"""What the rule engine decides: frozen actions the collector's I/O shell carries out.

Personal data rule: ``title``, ``data``, ``kind`` and ``key`` may be published on MQTT
(``shouhu/v1/alerts/{kind}``) and stored with the alert, so they carry ids, device keys,
gateway ids and numbers only. Names and addresses go only in ``message``, which is meant for
the notifier (apprise) and the people in ``contacts``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias, TypedDict

from collector.domain import Contact

Severity = Literal["info", "warning", "critical"]
SEVERITY_RANK: dict[str, int] = {"info": 0, "warning": 1, "critical": 2}

# A rule's persisted state: JSON-serialisable (str keys, lists not tuples, no sets).
StateDict: TypeAlias = dict[str, Any]


@dataclass(frozen=True, slots=True)
class RaiseAlert:
    """Open (or refresh) the alert ``(kind, key)``; the alert book de-duplicates on that pair."""

    kind: str
    key: str
    severity: Severity
    title: str  # public: no personal data
    message: str  # for the notifier only: may name the person or place
    subjects: tuple[str, ...] = ()  # registry ids, e.g. "wearer:w-1", "household:h-7"
    contacts: tuple[Contact, ...] = ()
    data: Mapping[str, Any] = field(default_factory=dict)  # public: ids and numbers


@dataclass(frozen=True, slots=True)
class ResolveAlert:
    """The condition behind ``(kind, key)`` is over."""

    kind: str
    key: str
    reason: str


@dataclass(frozen=True, slots=True)
class Notice:
    """A one-shot message with no lifecycle (footprints, school arrival and departure)."""

    kind: str
    contacts: tuple[Contact, ...]
    title: str  # public
    message: str  # for the notifier only
    data: Mapping[str, Any] = field(default_factory=dict)  # public


@dataclass(frozen=True, slots=True)
class SendCommand:
    """Publish ``command`` on ``shouhu/v1/gw/{gw}/down/cmd``."""

    gw: str
    command: Mapping[str, Any]


VerdictValue = Literal["normal", "abnormal", "missed"]


@dataclass(frozen=True, slots=True)
class Verdict:
    """How a patrol check-in (or a missed checkpoint) was judged: stored in the time series."""

    box: str
    route: str | None
    unit: str | None
    ts: int
    verdict: VerdictValue
    reasons: tuple[str, ...] = ()
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Rejected:
    """A record a rule could not read: the collector counts and dead-letters it, once."""

    rule: str
    gw: str
    seq: int
    reason: str


Action: TypeAlias = RaiseAlert | ResolveAlert | Notice | SendCommand | Verdict | Rejected


class ContactDict(TypedDict):
    id: str
    name: str
    url: str
    role: str
    order: int


def contact_to_dict(c: Contact) -> ContactDict:
    return {"id": c.id, "name": c.name, "url": c.url, "role": c.role, "order": c.order}


def contact_from_dict(d: Mapping[str, Any]) -> Contact:
    return Contact(
        id=str(d["id"]),
        name=str(d["name"]),
        url=str(d["url"]),
        role=str(d.get("role", "family")),
        order=int(d.get("order", 0)),
    )


def number(value: Any) -> float | None:
    """A JSON number as float, or None for anything else (bool is not a number here)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if value != value or value in (float("inf"), float("-inf")):
        return None
    return float(value)


def profile_id(ref: str) -> str:
    """``"amulet-ibeacon@1"`` -> ``"amulet-ibeacon"``."""
    return ref.partition("@")[0]
