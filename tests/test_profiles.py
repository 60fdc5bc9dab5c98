"""Loading and validating device profiles; the ``profiles`` and ``decode ble`` CLI verbs."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from device_profiles import PROFILES_DIR
from shouhu.cli import main
from shouhu.exceptions import ProfileError
from shouhu.profiles import AlertSemantics, load_profile, load_profiles, parse_profile

VALID = textwrap.dedent(
    """\
    id: test-beacon
    version: 2
    transport: ble
    description: a test profile
    decoder: ibeacon
    match: {uuid: "FDA50693-A4E2-4FB1-AFCF-C6EB07647825", major: [1, 2]}
    options: {}
    readings: [sighting]
    alerts: {severity: {wanderer: critical}, supervision_s: 60, battery_low_mv: 2500, battery_low_pct: 20, debounce_s: 1.5}
    golden:
      - name: amulet
        payload: "0201061aff4c000215 fda50693a4e24fb1afcfc6eb07647825 0001 0002 c5"
        meta: {rssi: -70}
        expect:
          - {kind: sighting, device: "ibeacon:fda50693a4e24fb1afcfc6eb07647825:1:2"}
      - name: text payload
        payload_text: "not an advertisement"
        expect: []
    """
)


def write(tmp_path: Path, text: str, name: str = "test-beacon.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_load_valid_profile(tmp_path: Path) -> None:
    path = write(tmp_path, VALID)
    profile = load_profile(path)
    assert profile.ref == "test-beacon@2"
    assert profile.transport == "ble" and profile.decoder == "ibeacon"
    assert profile.match == {"uuid": "FDA50693-A4E2-4FB1-AFCF-C6EB07647825", "major": [1, 2]}
    assert profile.readings == ("sighting",)
    assert profile.alerts == AlertSemantics({"wanderer": "critical"}, 60, 2500, 20, 1.5)
    assert profile.golden[0].payload == bytes.fromhex(
        "0201061aff4c000215fda50693a4e24fb1afcfc6eb0764782500010002c5"
    )
    assert profile.golden[0].meta == {"rssi": -70}
    assert profile.golden[1].payload == b"not an advertisement"
    assert profile.golden[1].expect == ()
    assert profile.source_path == str(path)


def replace_line(text: str, old: str, new: str) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


# (edit to VALID, expected line, expected message) — line numbers count from 1 in VALID.
BAD_CASES = [
    (("id: test-beacon", "id: Test_Beacon"), 1, "id: expected lowercase letters, digits"),
    (("version: 2", "version: 0"), 2, "version: expected an integer >= 1, got 0"),
    (("version: 2", "version: true"), 2, "version: expected an integer >= 1, got True"),
    (("transport: ble", "transport: zigbee"), 3, "transport: expected one of ble, nfc, serial, got 'zigbee'"),
    (("decoder: ibeacon", "decoder: altbeacon"), 5, "decoder: expected one of "),
    (("readings: [sighting]", "readings: [sighting, gossip]"), 8, "readings[1]: expected one of sighting"),
    (("readings: [sighting]", "readings: []"), 8, "readings: expected at least one stream"),
    (("supervision_s: 60", "supervision_s: -1"), 9, "alerts.supervision_s: expected an integer >= 1"),
    (("battery_low_pct: 20", "battery_low_pct: 120"), 9, "alerts.battery_low_pct: expected an integer 0..100"),
    (("{wanderer: critical}", "{wanderer: loud}"), 9, "alerts.severity.wanderer: expected one of info, warning, critical"),
    (("debounce_s: 1.5", "debounce_s: soon"), 9, "alerts.debounce_s: expected a number >= 0"),
    (("debounce_s: 1.5", "debounce_s: 1, page_everyone: true"), 9, "alerts.page_everyone: unknown key"),
    (("options: {}", "options: {}\ncolour: red"), 8, "colour: unknown key"),
    (('payload: "0201061aff', 'payload: "0201061xff'), 12, "golden[0].payload: expected hex bytes"),
    (("    meta: {rssi: -70}", "    meta: {rssi: -70}\n    payload_text: x"), 11, "golden[0]: expected exactly one of payload"),
    (("- {kind: sighting,", "- {kind: alarm,"), 15, "golden[0].expect[0].kind: expected one of readings [sighting]"),
    (("- {kind: sighting,", "- {colour: red, kind: sighting,"), 15, "golden[0].expect[0].colour: unknown key"),
    (('major: [1, 2]}', 'major: [1, 70000]}'), 6, "match.major: expected an integer 0..65535"),
    (('match: {uuid: "FDA50693-A4E2-4FB1-AFCF-C6EB07647825",', "match: {uuid: nope,"), 6, "match.uuid: expected a 128-bit UUID"),
    (("    expect: []", "    expect: []\n    expect: []"), 19, "golden[1].expect: duplicate key"),
]  # fmt: skip


@pytest.mark.parametrize(("edit", "line", "message"), BAD_CASES, ids=[c[2][:40] for c in BAD_CASES])
def test_invalid_profile_names_file_line_and_field(
    tmp_path: Path, edit: tuple[str, str], line: int, message: str
) -> None:
    path = write(tmp_path, replace_line(VALID, *edit))
    with pytest.raises(ProfileError) as caught:
        load_profile(path)
    text = caught.value.message
    assert text.startswith(f"{path}:{line}: "), text
    assert message in text, text


def test_missing_required_field(tmp_path: Path) -> None:
    path = write(tmp_path, VALID.replace("decoder: ibeacon\n", ""))
    with pytest.raises(ProfileError, match=r"decoder: required field is missing"):
        load_profile(path)


def test_not_yaml_and_not_a_mapping(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match=r"bad\.yaml:2: not valid YAML"):
        load_profile(write(tmp_path, "id: x\n  version: [1\n", "bad.yaml"))
    with pytest.raises(ProfileError, match=r"list\.yaml:1: \(document\): expected a mapping"):
        load_profile(write(tmp_path, "- 1\n- 2\n", "list.yaml"))
    with pytest.raises(ProfileError, match="cannot read profile"):
        load_profile(tmp_path / "absent.yaml")


def test_parse_profile_from_a_mapping() -> None:
    profile = parse_profile(
        {
            "id": "x",
            "version": 1,
            "transport": "ble",
            "decoder": "eddystone",
            "readings": ["event"],
        },
        "bundle:x",
    )
    assert profile.ref == "x@1" and profile.source_path == "bundle:x"
    with pytest.raises(ProfileError, match=r"^bundle:y: match\.frames: expected a list"):
        parse_profile(
            {"id": "y", "version": 1, "transport": "ble", "decoder": "eddystone",
             "readings": ["event"], "match": {"frames": "tlm"}},
            "bundle:y",
        )  # fmt: skip


def test_load_profiles_files_dirs_and_duplicates(tmp_path: Path) -> None:
    first = write(tmp_path, VALID)
    other = write(tmp_path, VALID.replace("id: test-beacon", "id: another"), "another.yaml")
    loaded = load_profiles([tmp_path])
    assert list(loaded) == ["another", "test-beacon"]
    assert list(load_profiles([first])) == ["test-beacon"]
    dup_dir = tmp_path / "dup"
    dup_dir.mkdir()
    write(dup_dir, VALID, "copy.yaml")
    with pytest.raises(ProfileError, match="duplicate profile id 'test-beacon'"):
        load_profiles([first, dup_dir])
    with pytest.raises(ProfileError, match="no such file"):
        load_profiles([tmp_path / "nope"])
    assert other.exists()


def test_shipped_profiles_are_keyed_by_id_and_file_name_matches() -> None:
    shipped = load_profiles()
    assert {"amulet-ibeacon", "aed-eddystone"} <= set(shipped)
    for pid, profile in shipped.items():
        assert profile.id == pid
        assert Path(str(profile.source_path)).name == f"{pid}.yaml"
    assert shipped["aed-eddystone"].alerts.battery_low_mv == 2500


# -- CLI ----------------------------------------------------------------------------------------


def test_cli_validate_shipped() -> None:
    result = CliRunner().invoke(main, ["profiles", "validate"])
    assert result.exit_code == 0, result.output
    count = len(list(PROFILES_DIR.glob("*.yaml")))
    assert f"{count} profiles valid, 0 invalid" in result.output


def test_cli_validate_reports_each_bad_file(tmp_path: Path) -> None:
    good = write(tmp_path, VALID)
    bad = write(tmp_path, VALID.replace("version: 2", "version: two"), "bad.yaml")
    result = CliRunner().invoke(main, ["profiles", "validate", str(good), str(bad)])
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert lines[0].startswith("ok ") and "test-beacon@2" in lines[0]
    assert re.match(rf"invalid {re.escape(str(bad))}:2: version: expected an integer", lines[1])
    assert lines[-1] == "1 profiles valid, 1 invalid"


def test_cli_list_table_and_json() -> None:
    table = CliRunner().invoke(main, ["profiles", "list"])
    assert table.exit_code == 0, table.output
    assert table.output.splitlines()[0].split() == [
        "ID",
        "VERSION",
        "TRANSPORT",
        "DECODER",
        "DESCRIPTION",
    ]
    assert any(line.startswith("amulet-ibeacon ") for line in table.output.splitlines())
    as_json = CliRunner().invoke(main, ["profiles", "list", "--json"])
    rows = json.loads(as_json.output)
    amulet = next(r for r in rows if r["id"] == "amulet-ibeacon")
    assert (
        amulet["version"] == 1 and amulet["transport"] == "ble" and amulet["decoder"] == "ibeacon"
    )


AMULET_HEX = "0201061aff4c000215fda50693a4e24fb1afcfc6eb0764782527111267c5"


def test_cli_decode_ble() -> None:
    runner = CliRunner()
    result = runner.invoke(
        main, ["decode", "ble", AMULET_HEX, "--rssi", "-61", "--address", "c3:00:00:00:00:01"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {
        "profile": "amulet-ibeacon@1",
        "device": "ibeacon:fda50693a4e24fb1afcfc6eb07647825:10001:4711",
        "kind": "sighting",
        "data": {"rssi": -61, "tx_power": -59, "major": 10001, "minor": 4711},
    }
    tlm = "0201060303aafe1116aafe2000096016800001e2400083d600"
    result = runner.invoke(
        main, ["decode", "ble", tlm, "--eddystone-id", f"{'5368cbe75f7e4a1d8a00'}:0000000000a1"]
    )
    assert json.loads(result.output)["device"] == "eddystone:5368cbe75f7e4a1d8a00:0000000000a1"


def test_cli_decode_ble_errors(tmp_path: Path) -> None:
    runner = CliRunner()
    unknown = "0201060303aafe1716aafe00e3123456789012346789010000000000010000"  # other namespace
    result = runner.invoke(main, ["decode", "ble", unknown])
    assert result.exit_code == 1
    assert "error: no device profile matches this advertisement" in result.output
    assert runner.invoke(main, ["decode", "ble", "0201xz"]).exit_code == 2
    assert runner.invoke(main, ["decode", "ble", "02010620"]).exit_code == 2  # truncated AD
    only_aed = runner.invoke(main, ["decode", "ble", AMULET_HEX, "--profile", "aed-eddystone"])
    assert only_aed.exit_code == 1
    write(tmp_path, VALID)
    from_dir = runner.invoke(
        main, ["decode", "ble", "0201061aff4c000215fda50693a4e24fb1afcfc6eb0764782500010002c5",
               "--profiles-dir", str(tmp_path)],
    )  # fmt: skip
    assert from_dir.exit_code == 0, from_dir.output
    assert json.loads(from_dir.output)["profile"] == "test-beacon@2"
