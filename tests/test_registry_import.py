"""CSV import: the shipped examples import cleanly; a file with bad rows reports each, imports none."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from collector.domain import Gateway, Wearer
from collector.registry.csv_import import (
    apply_import,
    import_csv,
    kind_from_filename,
    plan_import,
    summary,
)
from collector.registry.store import RegistryStore
from shouhu.cardkey import card_key
from shouhu.exceptions import ConfigError, StorageError

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "registry"
KEY_HEX = "5f1c0e7a9b3d2c4e8f6a1b0c9d8e7f6a"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[RegistryStore]:
    s = RegistryStore(tmp_path / "registry.sqlite")
    yield s
    s.close()


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_examples_import_cleanly_in_dependency_order(store: RegistryStore) -> None:
    files = sorted(EXAMPLES.glob("*.csv"))
    assert len(files) == 10
    counts = import_csv(store, files)
    assert counts["gateways"] == 5 and counts["wearers"] == 3 and counts["contacts"] == 13
    snap = store.snapshot()
    assert len(snap.students) == 3
    w = store.wearer("w-001")
    assert w is not None and w.home_gateways == frozenset({"gw-east-017"})
    assert [c.id for c in w.contacts] == ["c-w001-son", "c-w001-desk"]  # escalation order
    hh = store.household("hh-0042")
    assert hh is not None and {a.room for a in hh.alarms} == {"kitchen", "hall"}
    assert store.patrol_route("route-dongsi-night").boxes == ("box-101", "box-102", "box-103")  # type: ignore[union-attr]


def test_reimport_updates_in_place(store: RegistryStore) -> None:
    import_csv(store, sorted(EXAMPLES.glob("*.csv")))
    store.set_missing("w-002", True)
    counts = import_csv(store, [EXAMPLES / "wearers.csv"])
    assert summary(counts) == "imported 3 wearers"
    assert len(store.wearers()) == 3
    assert len(store.contacts()) == 13  # the wearers' contacts were not touched
    # wearers.csv has a `missing` column saying "no": the file is the truth
    assert not store.wearer("w-002").missing  # type: ignore[union-attr]


def test_a_file_without_missing_column_keeps_the_flag(store: RegistryStore, tmp_path: Path) -> None:
    store.add(Gateway("gw-1", "x"))
    store.add(Wearer("w-1", "A", "ibeacon:x:1:1", missing=True))
    path = _write(
        tmp_path, "wearers.csv", "id,name,device,home_gateways\nw-1,A,ibeacon:x:1:1,gw-1\n"
    )
    import_csv(store, [path])
    w = store.wearer("w-1")
    assert w is not None and w.missing and w.home_gateways == frozenset({"gw-1"})


def test_every_bad_row_is_reported_and_nothing_imported(
    store: RegistryStore, tmp_path: Path
) -> None:
    store.add(Gateway("gw-1", "Dongsi"))
    path = _write(
        tmp_path,
        "wearers.csv",
        "id,name,device,home_gateways,risk_schedule,home_by\n"
        "w-1,Good Row,ibeacon:x:1:1,gw-1,Mon-Fri 21:00-06:00,20:00\n"
        "w-2,Bad Gateway,ibeacon:x:1:2,gw-1;gw-x,,\n"
        "w-3,Bad Schedule,ibeacon:x:1:3,,Mon-Fri 25:00-06:00,\n"
        "w-1,Duplicate Id,ibeacon:x:1:4,,,\n"
        ",No Id,ibeacon:x:1:5,,,7pm\n"
        "w-6,Same Device,ibeacon:x:1:1,,,\n",
    )
    before = store.changes()
    plan = plan_import(store, [path])
    messages = [str(e) for e in plan.errors]
    assert "wearers.csv:3: home_gateways: unknown gateway 'gw-x'" in messages
    assert "wearers.csv:4: risk_schedule: not a HH:MM time: '25:00'" in messages
    assert "wearers.csv:5: id: duplicate id 'w-1' (also on line 2)" in messages
    assert "wearers.csv:6: id: required" in messages
    assert "wearers.csv:6: home_by: not a HH:MM time: '7pm'" in messages
    assert "wearers.csv:7: device: 'ibeacon:x:1:1' also on line 2" in messages
    assert len(messages) == 6
    with pytest.raises(StorageError, match="nothing imported"):
        import_csv(store, [path])
    with pytest.raises(StorageError):
        apply_import(store, plan)
    assert store.wearers() == ()
    assert store.changes() == before


def test_ranges_urls_roles_and_columns_are_checked(store: RegistryStore, tmp_path: Path) -> None:
    gateways = _write(
        tmp_path,
        "gateways.csv",
        "id,site,lat,lon\ngw-1,A,91,116\ngw-2,B,39.9,\ngw-3,C,north,116\ngw-4,D,39.9,116.4\n",
    )
    contacts = _write(
        tmp_path,
        "contacts.csv",
        "id,owner_kind,owner_id,name,role,order,url\n"
        "c-1,wearer,w-404,A,family,0,mailto://a:b@example.org\n"
        "c-2,house,h-1,B,family,0,mailto://a:b@example.org\n"
        "c-3,wearer,w-404,C,cousin,x,not a url\n",
    )
    messages = [str(e) for e in plan_import(store, [gateways, contacts]).errors]
    assert "gateways.csv:2: lat: 91.0 is out of range -90..90" in messages
    assert "gateways.csv:3: lon: give both lat and lon, or neither" in messages
    assert "gateways.csv:4: lat: not a number: 'north'" in messages
    assert "contacts.csv:2: owner_id: unknown wearer 'w-404'" in messages
    assert any(m.startswith("contacts.csv:3: owner_kind: not one of wearer") for m in messages)
    assert any(m.startswith("contacts.csv:4: role: not one of") for m in messages)
    assert "contacts.csv:4: order: not a whole number: 'x'" in messages
    assert any(m.startswith("contacts.csv:4: url: not a notification URL") for m in messages)
    bad_header = _write(tmp_path, "schools.csv", "id,nmae\ns-1,x\n")
    header_errors = [str(e) for e in plan_import(store, [bad_header]).errors]
    assert header_errors[0] == "schools.csv:1: missing column(s) name"
    assert header_errors[1].startswith("schools.csv:1: unknown column(s) nmae")


def test_references_resolve_across_files_of_one_import(
    store: RegistryStore, tmp_path: Path
) -> None:
    schools = _write(tmp_path, "schools.csv", "id,name\nsch-1,Dongsi Primary\n")
    students = _write(
        tmp_path, "students.csv", f"id,name,school,card\nstu-1,A,sch-1,card:{'ab' * 12}\n"
    )
    counts = import_csv(store, [students, schools])  # given in the wrong order on purpose
    assert counts == {"schools": 1, "students": 1}


def test_clear_card_uids_are_hashed_with_the_key_and_never_stored(
    store: RegistryStore, tmp_path: Path
) -> None:
    _write(tmp_path, "schools.csv", "id,name\nsch-1,S\n")
    import_csv(store, [tmp_path / "schools.csv"])
    students = _write(
        tmp_path, "students.csv", "id,name,school,card_uid\nstu-1,A,sch-1,04A1B2C3D4E5F6\n"
    )
    without_key = [str(e) for e in plan_import(store, [students]).errors]
    assert without_key == [
        "students.csv:2: card_uid: a clear card UID needs --uid-hash-key-file to hash it"
    ]
    key = bytes.fromhex(KEY_HEX)
    import_csv(store, [students], card_hash_key=key)
    stored = store.student("stu-1")
    assert stored is not None and stored.card == card_key("04A1B2C3D4E5F6", key)
    files = [Path(store.url), Path(store.url + "-wal")]
    db_bytes = b"".join(f.read_bytes() for f in files if f.exists())
    assert b"04A1B2C3D4E5F6" not in db_bytes and b"04a1b2c3d4e5f6" not in db_bytes


def test_kind_comes_from_the_file_name_or_is_asked_for(
    store: RegistryStore, tmp_path: Path
) -> None:
    assert kind_from_filename("wearers.csv") == "wearers"
    assert kind_from_filename("district-7_wearers.csv") == "wearers"
    assert kind_from_filename("smoke_alarms.csv") == "alarms"
    assert kind_from_filename("patrol-boxes.csv") == "boxes"
    assert kind_from_filename("people.csv") is None
    people = _write(tmp_path, "people.csv", "id,site\ngw-1,A\n")
    with pytest.raises(ConfigError) as info:
        plan_import(store, [people])
    assert "--kind" in info.value.one_line()
    assert import_csv(store, [people], kind="gateways") == {"gateways": 1}
