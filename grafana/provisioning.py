"""Grafana provisioning files: the InfluxDB datasource (fixed uid) and the dashboard provider.

Grafana reads these at start from ``<provisioning>/datasources/*.yaml`` and
``<provisioning>/dashboards/*.yaml``; the same datasource settings are what ``push`` sends
through the HTTP API, so both roads end in the same setup.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import yaml

from grafana.dashboards import DATASOURCE_UID, FOLDER_TITLE, FOLDER_UID

DATASOURCE_NAME: Final = "Shouhu InfluxDB"
PROVIDER_NAME: Final = "shouhu"


@dataclass(frozen=True, slots=True)
class InfluxSettings:
    """Where Grafana finds the time series (InfluxQL over the InfluxDB 1.x HTTP API)."""

    url: str = "http://127.0.0.1:8086"
    database: str = "shouhu"
    user: str = ""
    password: str = ""


def datasource(settings: InfluxSettings) -> dict[str, Any]:
    """The datasource as both the provisioning file and ``POST /api/datasources`` take it."""
    ds: dict[str, Any] = {
        "name": DATASOURCE_NAME,
        "uid": DATASOURCE_UID,
        "type": "influxdb",
        "access": "proxy",
        "url": settings.url,
        "database": settings.database,
        "user": settings.user,
        "isDefault": False,
        "jsonData": {"dbName": settings.database, "httpMode": "POST", "version": "InfluxQL"},
    }
    if settings.password:
        ds["secureJsonData"] = {"password": settings.password}
    return ds


def datasource_yaml(settings: InfluxSettings) -> str:
    doc = {"apiVersion": 1, "datasources": [{**datasource(settings), "editable": False}]}
    return yaml.safe_dump(doc, sort_keys=False)


def provider_yaml(dashboards_dir: Path) -> str:
    """A file provider that loads every board JSON from ``dashboards_dir`` into the folder."""
    doc = {
        "apiVersion": 1,
        "providers": [
            {
                "name": PROVIDER_NAME,
                "orgId": 1,
                "folder": FOLDER_TITLE,
                "folderUid": FOLDER_UID,
                "type": "file",
                "disableDeletion": False,
                "allowUiUpdates": False,
                "updateIntervalSeconds": 60,
                "options": {"path": str(dashboards_dir), "foldersFromFilesStructure": False},
            }
        ],
    }
    return yaml.safe_dump(doc, sort_keys=False)
