"""``shouhu grafana``: write the provisioning tree, push to a running Grafana, regenerate JSON."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from grafana.provisioning import InfluxSettings

influx_options = [
    click.option("--influx-url", default="http://127.0.0.1:8086", show_default=True),
    click.option("--database", default="shouhu", show_default=True),
    click.option("--user", default="", help="InfluxDB user Grafana reads as."),
    click.option("--password", default="", envvar="SHOUHU_INFLUX_PASSWORD"),
]


def with_influx_options(f):  # type: ignore[no-untyped-def]
    for option in reversed(influx_options):
        f = option(f)
    return f


@click.group()
def grafana() -> None:
    """Command-center boards as code: export a provisioning tree or push through the API."""


@grafana.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@with_influx_options
def export(directory: Path, influx_url: str, database: str, user: str, password: str) -> None:
    """Write DIRECTORY/provisioning/{datasources,dashboards}/shouhu.yaml and dashboards/*.json."""
    from grafana.export import export_tree

    result = export_tree(directory, InfluxSettings(influx_url, database, user, password))
    click.echo(result.summary())


@grafana.command()
@click.option("--url", required=True, help="Grafana base URL, e.g. http://127.0.0.1:3000")
@click.option("--token", required=True, envvar="GRAFANA_TOKEN", help="Service account token.")
@with_influx_options
def push(url: str, token: str, influx_url: str, database: str, user: str, password: str) -> None:
    """Create or update the datasource and every board in Grafana's "Shouhu" folder."""
    from grafana.push import push as push_all

    report = push_all(url, token, InfluxSettings(influx_url, database, user, password))
    for line in report.lines():
        click.echo(line)
    click.echo(report.summary())


@grafana.command()
@click.option("--check", is_flag=True, help="Exit 1 if grafana/generated is stale; write nothing.")
def generate(check: bool) -> None:
    """Regenerate grafana/generated/*.json from grafana/dashboards.py."""
    from grafana.dashboards import GENERATED_DIR, dashboards, to_json, write_dashboards

    if check:
        stale = [
            name
            for name, board in dashboards().items()
            if not (GENERATED_DIR / f"{name}.json").is_file()
            or (GENERATED_DIR / f"{name}.json").read_text(encoding="utf-8") != to_json(board)
        ]
        if stale:
            click.echo(f"stale: {', '.join(stale)} (run: shouhu grafana generate)", err=True)
            sys.exit(1)
        click.echo("grafana/generated is fresh")
        return
    paths = write_dashboards(GENERATED_DIR)
    click.echo(f"wrote {len(paths)} dashboards to {GENERATED_DIR}")
