"""Board structure: ids, uids, datasource refs, variables, queries; committed JSON is fresh;
the export tree is what Grafana's provisioning reads."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from grafana.dashboards import (
    DATASOURCE,
    DATASOURCE_UID,
    GENERATED_DIR,
    Json,
    dashboards,
    to_json,
)
from shouhu.cli import main

BOARDS = dashboards()
GRAFANA_VARIABLES = {"timeFilter", "__interval", "__interval_ms", "measurement"}


def datasource_refs(node: Any) -> list[Any]:
    """Every ``datasource`` value anywhere in the board."""
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "datasource":
                found.append(value)
            found.extend(datasource_refs(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(datasource_refs(item))
    return found


def test_uids_are_unique_and_stable() -> None:
    uids = [b["uid"] for b in BOARDS.values()]
    assert len(set(uids)) == len(uids) == 6
    assert all(re.fullmatch(r"shouhu-[a-z]+", u) for u in uids)


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_board_structure(name: str) -> None:
    board: Json = BOARDS[name]
    ids = [p["id"] for p in board["panels"]]
    assert len(set(ids)) == len(ids)
    assert board["schemaVersion"] >= 36
    refs = datasource_refs(board)
    assert refs and all(ref == dict(DATASOURCE) for ref in refs)
    assert DATASOURCE_UID == "shouhu-influxdb"
    defined = {v["name"] for v in board["templating"]["list"]}
    for var in board["templating"]["list"]:
        assert var["query"].startswith("SHOW TAG VALUES")
    for p in board["panels"]:
        assert p["targets"], f"{name}: panel {p['title']!r} has no target"
        assert p["gridPos"]["x"] + p["gridPos"]["w"] <= 24
        for t in p["targets"]:
            assert t["rawQuery"] is True and t["query"].strip(), p["title"]
            used = set(re.findall(r"\$(\w+)", t["query"]))
            assert used - GRAFANA_VARIABLES <= defined, f"{name}/{p['title']}: {used - defined}"
    for var in board["templating"]["list"]:
        earlier = set(re.findall(r"\$(\w+)", var["query"]))
        assert earlier <= defined


def test_panels_do_not_overlap() -> None:
    for board in BOARDS.values():
        cells: set[tuple[int, int]] = set()
        for p in board["panels"]:
            g = p["gridPos"]
            mine = {
                (x, y)
                for x in range(g["x"], g["x"] + g["w"])
                for y in range(g["y"], g["y"] + g["h"])
            }
            assert not cells & mine, f"{board['uid']}: {p['title']} overlaps"
            cells |= mine


def test_generated_json_is_fresh() -> None:
    on_disk = {p.stem: p.read_text(encoding="utf-8") for p in GENERATED_DIR.glob("*.json")}
    assert on_disk == {name: to_json(b) for name, b in BOARDS.items()}, (
        "grafana/generated is stale: run `shouhu grafana generate`"
    )
    result = CliRunner().invoke(main, ["grafana", "generate", "--check"])
    assert result.exit_code == 0, result.output


def test_export_writes_a_tree_grafana_loads(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main,
        [
            "grafana",
            "export",
            str(tmp_path),
            "--influx-url",
            "http://influx:8086",
            "--database",
            "city",
            "--user",
            "grafana",
            "--password",
            "s3cret",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "wrote 6 dashboards" in result.output
    ds_doc = yaml.safe_load((tmp_path / "provisioning/datasources/shouhu.yaml").read_text())
    (ds,) = ds_doc["datasources"]
    assert ds_doc["apiVersion"] == 1
    assert (ds["uid"], ds["type"], ds["url"], ds["database"]) == (
        "shouhu-influxdb",
        "influxdb",
        "http://influx:8086",
        "city",
    )
    assert ds["jsonData"] == {"dbName": "city", "httpMode": "POST", "version": "InfluxQL"}
    assert ds["secureJsonData"] == {"password": "s3cret"}
    assert (tmp_path / "provisioning/datasources/shouhu.yaml").stat().st_mode & 0o077 == 0
    (provider,) = yaml.safe_load((tmp_path / "provisioning/dashboards/shouhu.yaml").read_text())[
        "providers"
    ]
    assert provider["type"] == "file" and provider["folder"] == "Shouhu"
    assert Path(provider["options"]["path"]) == (tmp_path / "dashboards").resolve()
    written = sorted(p.name for p in (tmp_path / "dashboards").glob("*.json"))
    assert written == sorted(f"{n}.json" for n in BOARDS)


def test_export_to_an_unwritable_place_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = CliRunner().invoke(main, ["grafana", "export", str(blocker / "sub")])
    assert result.exit_code == 1
    assert "error: cannot write the Grafana provisioning tree" in result.output
