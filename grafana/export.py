"""Write a provisioning tree Grafana can load as is (``shouhu grafana export DIR``).

    DIR/provisioning/datasources/shouhu.yaml
    DIR/provisioning/dashboards/shouhu.yaml     (provider → DIR/dashboards)
    DIR/dashboards/<board>.json

Point Grafana's ``paths.provisioning`` (``GF_PATHS_PROVISIONING``) at ``DIR/provisioning``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from grafana.dashboards import write_dashboards
from grafana.provisioning import InfluxSettings, datasource_yaml, provider_yaml
from shouhu.exceptions import ShouhuError


@dataclass(frozen=True, slots=True)
class ExportResult:
    datasource_file: Path
    provider_file: Path
    dashboards: tuple[Path, ...]

    def summary(self) -> str:
        root = self.datasource_file.parents[2]
        return (
            f"wrote {len(self.dashboards)} dashboards, datasource and provider under {root} "
            f"(set GF_PATHS_PROVISIONING={root / 'provisioning'})"
        )


def export_tree(directory: Path, settings: InfluxSettings) -> ExportResult:
    """Write the tree; an unwritable directory becomes a ``ShouhuError`` with a hint."""
    root = directory.resolve()
    ds_file = root / "provisioning" / "datasources" / "shouhu.yaml"
    provider_file = root / "provisioning" / "dashboards" / "shouhu.yaml"
    try:
        ds_file.parent.mkdir(parents=True, exist_ok=True)
        provider_file.parent.mkdir(parents=True, exist_ok=True)
        ds_file.write_text(datasource_yaml(settings), encoding="utf-8")
        if settings.password:
            os.chmod(ds_file, 0o600)  # it holds the InfluxDB password
        provider_file.write_text(provider_yaml(root / "dashboards"), encoding="utf-8")
        boards = write_dashboards(root / "dashboards")
    except OSError as exc:
        raise ShouhuError(
            f"cannot write the Grafana provisioning tree under {root}: {exc}",
            hint="choose a directory you can write to",
        ) from exc
    return ExportResult(ds_file, provider_file, tuple(boards))
