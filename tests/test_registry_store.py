"""The registry store: every entity round-trips through SQLite as the same frozen value."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.domain import (
    Aed,
    Contact,
    Gateway,
    Household,
    PatrolBox,
    PatrolRoute,
    School,
    SmokeAlarm,
    Student,
    Wearer,
    Window,
)
from collector.registry.schema import (
    LATEST_VERSION,
    format_days,
    format_schedule,
    parse_days,
    parse_schedule,
)
from collector.registry.store import DIALECTS, OwnedContact, RegistryStore, as_dict
from shouhu.cardkey import card_key, is_card_key
from shouhu.exceptions import ConfigError, DecodeError, StorageError

FAMILY = Contact("c-1", "Zhang Wei", "tgram://123456789:AAHtoken/100", "family", 0)
DESK = Contact("c-2", "Desk", "mailto://desk:pw@example.org", "operator", 1)


def _filled(store: RegistryStore) -> dict[str, object]:
    gw1 = Gateway("gw-1", "Dongsi Community Centre", "home", 39.93, 116.41)
    gw2 = Gateway("gw-2", "School gate")
    wearer = Wearer(
        "w-1",
        "Zhang Guilan",
        "ibeacon:fda50693a4e24fb1afcfc6eb07647825:1:2",
        frozenset({"gw-1", "gw-2"}),
        frozenset({"home"}),
        (
            Window(frozenset({0, 1, 2, 3, 4}), "21:00", "06:00"),
            Window(frozenset({5, 6}), "20:00", "07:00"),
        ),
        "20:00",
        False,
        (FAMILY, DESK),
    )
    aed = Aed("aed-1", "ibeacon:e2c5:100:1", "gw-1", "lobby", ())
    alarm = SmokeAlarm("rf433:hh-1-kitchen", "hh-1", "kitchen")
    household = Household("hh-1", "Alley 12", frozenset({"gw-1"}), "Dongcheng", (alarm,), ())
    box1 = PatrolBox("box-1", "nfc:04aa", 39.9, 116.4, "north", "00" * 16, "11" * 16)
    box2 = PatrolBox("box-2", "nfc:04bb")
    route = PatrolRoute(
        "r-1",
        "unit 3",
        ("box-2", "box-1"),
        (Window(frozenset(range(7)), "22:00", "02:00"),),
        120,
        40.0,
    )
    school = School(
        "sch-1", "Dongsi Primary", frozenset({"gw-2"}), "08:15", frozenset({0, 1, 2, 3, 4})
    )
    student = Student("stu-1", "Chen Xiaoyu", "card:" + "ab" * 12, "sch-1", ())
    for value in (gw1, gw2, wearer, aed, household, box1, box2, route, school, student):
        store.add(value)
    return {
        "gw1": gw1,
        "gw2": gw2,
        "wearer": wearer,
        "aed": aed,
        "household": household,
        "box1": box1,
        "box2": box2,
        "route": route,
        "school": school,
        "student": student,
    }


@pytest.fixture
def store(tmp_path: Path) -> Iterator[RegistryStore]:
    s = RegistryStore(tmp_path / "registry.sqlite")
    yield s
    s.close()


def test_every_entity_round_trips(store: RegistryStore) -> None:
    v = _filled(store)
    assert store.gateway("gw-1") == v["gw1"]
    assert store.gateway("gw-2") == v["gw2"]
    assert store.wearer("w-1") == v["wearer"]
    assert store.aed("aed-1") == v["aed"]
    assert store.household("hh-1") == v["household"]
    assert store.smoke_alarm("rf433:hh-1-kitchen") == SmokeAlarm(
        "rf433:hh-1-kitchen", "hh-1", "kitchen"
    )
    assert store.patrol_box("box-1") == v["box1"]
    assert store.patrol_route("r-1") == v["route"]  # box order kept
    assert store.school("sch-1") == v["school"]
    assert store.student("stu-1") == v["student"]
    assert store.contact("c-2") == OwnedContact("wearer", "w-1", DESK)
    assert store.gateway("nope") is None


def test_data_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite"
    with RegistryStore(f"sqlite:///{path}") as first:
        v = _filled(first)
    with RegistryStore(path) as again:
        assert again.schema_version() == LATEST_VERSION
        assert again.wearers() == (v["wearer"],)


def test_snapshot_view_answers_the_rules_lookups(store: RegistryStore) -> None:
    v = _filled(store)
    view = store.snapshot().view()
    assert view.wearer_by_device("ibeacon:fda50693a4e24fb1afcfc6eb07647825:1:2") == v["wearer"]
    assert view.household_of_alarm("rf433:hh-1-kitchen") == (
        v["household"],
        SmokeAlarm("rf433:hh-1-kitchen", "hh-1", "kitchen"),
    )
    assert view.routes_with_box("box-1") == (v["route"],)
    assert view.student_by_card("card:" + "ab" * 12) == v["student"]
    assert view.students_of("sch-1") == (v["student"],)


def test_change_counter_moves_on_every_write_only(store: RegistryStore) -> None:
    start = store.changes().counter
    store.add(Gateway("gw-9", "x"))
    after_add = store.changes()
    assert after_add.counter == start + 1 and after_add.changed_ms > 0
    store.snapshot()
    store.gateways()
    assert store.changes() == after_add
    store.remove("gateways", "gw-9")
    assert store.changes().counter == start + 2


def test_add_refuses_an_existing_key_unless_replace(store: RegistryStore) -> None:
    store.add(Gateway("gw-1", "old"))
    with pytest.raises(StorageError, match="already exists"):
        store.add(Gateway("gw-1", "new"))
    store.add(Gateway("gw-1", "new"), replace=True)
    assert store.gateway("gw-1") == Gateway("gw-1", "new")


def test_unknown_reference_is_refused_with_a_hint(store: RegistryStore) -> None:
    with pytest.raises(StorageError) as info:
        store.add(Aed("aed-1", "ibeacon:x:1:1", "gw-x"))
    assert "unknown gateway 'gw-x'" in info.value.one_line()
    assert "shouhu registry gateway add" in info.value.one_line()
    assert store.aeds() == ()


def test_a_failed_batch_writes_nothing(store: RegistryStore) -> None:
    before = store.changes()
    with pytest.raises(StorageError):
        store.add_all([Gateway("gw-1", "a"), Aed("aed-1", "ibeacon:x:1:1", "gw-missing")])
    assert store.gateways() == ()
    assert store.changes() == before


def test_device_belongs_to_one_entry(store: RegistryStore) -> None:
    store.add(Wearer("w-1", "A", "ibeacon:x:1:1"))
    with pytest.raises(StorageError, match="already belongs to wearer w-1"):
        store.add(Wearer("w-2", "B", "ibeacon:x:1:1"))


def test_remove_refuses_entries_still_in_use_and_cascades_owned_ones(store: RegistryStore) -> None:
    _filled(store)
    with pytest.raises(StorageError, match="still used by wearer w-1"):
        store.remove("gateways", "gw-1")
    with pytest.raises(StorageError, match="route r-1"):
        store.remove("boxes", "box-1")
    assert store.remove("wearers", "w-1")
    assert store.contacts() == ()  # the wearer's contacts went with it
    assert store.remove("households", "hh-1")
    assert store.smoke_alarms() == ()
    assert not store.remove("wearers", "w-1")


def test_set_missing_and_found(store: RegistryStore) -> None:
    store.add(Wearer("w-1", "A", "ibeacon:x:1:1"))
    assert store.set_missing("w-1", True).missing
    assert store.wearer("w-1").missing  # type: ignore[union-attr]
    assert not store.set_missing("w-1", False).missing
    with pytest.raises(StorageError, match="unknown wearer"):
        store.set_missing("w-404", True)


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite"
    RegistryStore(path).close()
    import sqlite3

    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO schema_version (version) VALUES (99)")
    with pytest.raises(StorageError, match="newer"):
        RegistryStore(path)


def test_postgresql_needs_a_driver_and_says_so() -> None:
    try:
        import psycopg  # type: ignore[import-not-found]  # noqa: F401
    except ModuleNotFoundError:
        with pytest.raises(ConfigError, match="psycopg"):
            RegistryStore("postgresql://shouhu@localhost/registry")
    assert DIALECTS["postgresql"].sql("SELECT 1 WHERE a = ? AND b = ?") == (
        "SELECT 1 WHERE a = %s AND b = %s"
    )


@pytest.mark.parametrize(
    "text",
    ["Mon-Fri 21:00-06:00; Sat,Sun 20:00-07:00", "daily 22:00-02:00", "Mon,Wed,Fri 08:00-09:30"],
)
def test_schedule_text_round_trips(text: str) -> None:
    assert format_schedule(parse_schedule(text)) == text


def test_day_ranges_wrap_and_normalize() -> None:
    assert parse_days("Fri-Mon") == frozenset({4, 5, 6, 0})
    assert parse_days("mon-fri") == frozenset(range(5))
    assert format_days(parse_days("Sat,Sun,Mon")) == "Mon,Sat,Sun"
    assert format_days({0, 1, 2, 4}) == "Mon-Wed,Fri"


@pytest.mark.parametrize("bad", ["Mon 25:00-06:00", "Funday 10:00-11:00", "Mon-Fri", "21:00-06:00"])
def test_bad_schedules_are_config_errors(bad: str) -> None:
    with pytest.raises(ConfigError):
        parse_schedule(bad)


def test_as_dict_is_json_ready() -> None:
    w = Wearer(
        "w-1",
        "A",
        "d",
        frozenset({"gw-2", "gw-1"}),
        risk_schedule=parse_schedule("Mon 21:00-06:00"),
    )
    data = as_dict(w)
    assert data["home_gateways"] == ["gw-1", "gw-2"]
    assert data["risk_schedule"] == "Mon 21:00-06:00"


def test_card_key_is_keyed_and_ignores_uid_formatting() -> None:
    key = bytes(range(32))
    a = card_key("04A1B2C3D4E5F6", key)
    assert is_card_key(a)
    assert card_key("04:a1:b2:c3:d4:e5:f6", key) == a
    assert card_key("04A1B2C3D4E5F6", bytes(range(1, 33))) != a
    assert card_key("04A1B2C3D4E5F7", key) != a
    with pytest.raises(DecodeError):
        card_key("04A1B2", key)  # 3 bytes: not a card UID
    with pytest.raises(ConfigError):
        card_key("04A1B2C3", b"short")


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.frozensets(st.integers(0, 6), min_size=1),
            st.integers(0, 23),
            st.integers(0, 59),
            st.integers(0, 23),
            st.integers(0, 59),
        ),
        max_size=4,
    )
)
def test_any_schedule_survives_text_and_back(
    raw: list[tuple[frozenset[int], int, int, int, int]],
) -> None:
    windows = tuple(
        Window(d, f"{h1:02d}:{m1:02d}", f"{h2:02d}:{m2:02d}") for d, h1, m1, h2, m2 in raw
    )
    assert parse_schedule(format_schedule(windows)) == windows
