"""`shouhu registry ...` and `shouhu wearer ...` through click's CliRunner on a real SQLite file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from collector.registry.store import RegistryStore
from shouhu.cardkey import card_key
from shouhu.cli import main

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "registry"


@pytest.fixture
def db(tmp_path: Path) -> str:
    return str(tmp_path / "registry.sqlite")


def run(db: str, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), env={"SHOUHU_REGISTRY": db})
    return result.exit_code, result.stdout, result.stderr


def test_import_examples_then_list_and_show(db: str) -> None:
    code, out, err = run(db, "registry", "import", *map(str, sorted(EXAMPLES.glob("*.csv"))))
    assert code == 0, err
    assert out.strip() == (
        "imported 5 gateways, 3 households, 4 alarms, 3 wearers, 2 aeds, 3 boxes, 2 routes,"
        " 1 schools, 3 students, 13 contacts"
    )
    code, out, _ = run(db, "registry", "wearer", "list")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["id", "name", "device", "home_gateways", "missing"]
    assert [line.split()[0] for line in lines[1:]] == ["w-001", "w-002", "w-003"]
    code, out, _ = run(db, "registry", "route", "list", "--json")
    routes = json.loads(out)
    assert routes[1]["boxes"] == ["box-101", "box-102", "box-103"]
    assert routes[1]["schedule"] == "daily 22:00-02:00"
    code, out, _ = run(db, "registry", "household", "show", "hh-0042")
    assert code == 0
    assert "address: Dongsi 6th Alley 12, Apt 3-201" in out
    assert "role=fire_brigade" in out


def test_bad_file_lists_every_row_and_exits_1(db: str, tmp_path: Path) -> None:
    bad = tmp_path / "wearers.csv"
    bad.write_text(
        "id,name,device,home_gateways\nw-1,A,ibeacon:x:1:1,gw-x\nw-2,B,ibeacon:x:1:2,gw-y\n"
    )
    code, out, err = run(db, "registry", "import", str(bad))
    assert code == 1
    assert "wearers.csv:2: home_gateways: unknown gateway 'gw-x'" in err
    assert "wearers.csv:3: home_gateways: unknown gateway 'gw-y'" in err
    assert "nothing imported" in err
    assert RegistryStore(db).wearers() == ()


def test_add_show_remove_a_gateway_and_a_wearer(db: str) -> None:
    assert (
        run(db, "registry", "gateway", "add", "gw-1", "--site", "Dongsi", "--zone", "home")[0] == 0
    )
    code, out, err = run(
        db,
        "registry",
        "wearer",
        "add",
        "w-1",
        "--name",
        "Zhang Guilan",
        "--device",
        "ibeacon:x:1:1",
        "--home-gateway",
        "gw-1",
        "--safe-zone",
        "home",
        "--risk-schedule",
        "Mon-Fri 21:00-06:00; Sat,Sun 20:00-07:00",
        "--home-by",
        "20:00",
    )
    assert code == 0, err
    code, out, _ = run(db, "registry", "wearer", "show", "w-1", "--json")
    data = json.loads(out)
    assert data["home_gateways"] == ["gw-1"]
    assert data["risk_schedule"] == "Mon-Fri 21:00-06:00; Sat,Sun 20:00-07:00"
    code, _, err = run(db, "registry", "gateway", "remove", "gw-1")
    assert code == 1 and "still used by wearer w-1" in err
    assert run(db, "registry", "wearer", "remove", "w-1")[0] == 0
    assert run(db, "registry", "gateway", "remove", "gw-1")[0] == 0
    code, _, err = run(db, "registry", "gateway", "show", "gw-1")
    assert code == 1 and "unknown gateway 'gw-1'" in err


def test_unknown_reference_says_how_to_fix(db: str) -> None:
    code, _, err = run(
        db, "registry", "aed", "add", "aed-1", "--device", "ibeacon:a:1:1", "--gateway", "gw-x"
    )
    assert code == 1
    assert err.strip() == (
        "error: unknown gateway 'gw-x' (add it first with `shouhu registry gateway add`)"
    )


def test_option_syntax_is_checked_before_the_database(db: str) -> None:
    code, _, err = run(db, "registry", "wearer", "add", "w-1", "--name", "A", "--device", "d",
                       "--risk-schedule", "weekdays at night")  # fmt: skip
    assert code == 2 and "--risk-schedule" in err
    code, _, err = run(db, "registry", "gateway", "add", "gw-1", "--site", "x", "--lat", "95", "--lon", "1")  # fmt: skip
    assert code == 2
    code, _, err = run(db, "registry", "contact", "add", "c-1", "--owner", "wearer:w-1", "--name", "A",
                       "--url", "foo://bar")  # fmt: skip
    assert code == 2 and "apprise cannot use" in err


def test_student_card_uid_is_hashed(db: str, tmp_path: Path) -> None:
    key_file = tmp_path / "card.key"
    key_file.write_text("5f1c0e7a9b3d2c4e8f6a1b0c9d8e7f6a\n")
    assert run(db, "registry", "school", "add", "sch-1", "--name", "Dongsi Primary")[0] == 0
    code, _, err = run(db, "registry", "student", "add", "stu-1", "--name", "A", "--school", "sch-1",
                       "--card-uid", "04A1B2C3D4E5F6", "--uid-hash-key-file", str(key_file))  # fmt: skip
    assert code == 0, err
    student = RegistryStore(db).student("stu-1")
    assert student is not None
    assert student.card == card_key("04A1B2C3D4E5F6", bytes.fromhex(key_file.read_text()))


def test_wearer_mark_missing_and_found(db: str) -> None:
    run(db, "registry", "import", str(EXAMPLES / "gateways.csv"), str(EXAMPLES / "wearers.csv"))
    code, out, _ = run(db, "wearer", "mark-missing", "w-002")
    assert code == 0 and "marked missing" in out
    assert RegistryStore(db).wearer("w-002").missing  # type: ignore[union-attr]
    assert run(db, "wearer", "mark-found", "w-002")[0] == 0
    assert not RegistryStore(db).wearer("w-002").missing  # type: ignore[union-attr]
    code, _, err = run(db, "wearer", "mark-missing", "w-404")
    assert code == 1 and "unknown wearer 'w-404'" in err


def test_db_option_overrides_the_environment(tmp_path: Path, db: str) -> None:
    other = str(tmp_path / "other.sqlite")
    assert run(db, "registry", "gateway", "add", "gw-1", "--site", "x", "--db", other)[0] == 0
    assert RegistryStore(other).gateways()[0].id == "gw-1"
    assert RegistryStore(db).gateways() == ()
