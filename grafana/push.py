"""Push the datasource and boards into a running Grafana through its HTTP API (grafana-client).

Idempotent: the datasource is created or updated by its fixed uid, the boards are upserted
(``POST /api/dashboards/db`` with ``overwrite``) into the "Shouhu" folder, and anything already
equal is left alone, so a second push reports ``unchanged``. Errors of the library or of HTTP
become a ``ShouhuError`` with a one-line fix hint.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

import niquests
from grafana_client import GrafanaApi
from grafana_client.client import (
    GrafanaClientError,
    GrafanaException,
    GrafanaServerError,
    GrafanaTimeoutError,
    GrafanaUnauthorizedError,
    TokenAuth,
)

from grafana.dashboards import DATASOURCE_UID, FOLDER_TITLE, FOLDER_UID, dashboards
from grafana.provisioning import InfluxSettings, datasource
from shouhu.exceptions import ShouhuError

Change = Literal["created", "updated", "unchanged"]
# Keys Grafana adds or bumps on every save: not part of what we compare.
VOLATILE_KEYS: Final = frozenset({"id", "version"})
# Datasource keys we own; Grafana adds others (id, orgId, readOnly, ...).
DATASOURCE_KEYS: Final = ("name", "type", "access", "url", "database", "user", "jsonData")


@dataclass(frozen=True, slots=True)
class Pushed:
    what: str  # "datasource", "folder", "dashboard"
    uid: str
    change: Change


@dataclass(frozen=True, slots=True)
class PushReport:
    items: tuple[Pushed, ...]

    def lines(self) -> list[str]:
        return [f"{p.what} {p.uid}: {p.change}" for p in self.items]

    def summary(self) -> str:
        counts = {c: sum(p.change == c for p in self.items) for c in ("created", "updated")}
        unchanged = sum(p.change == "unchanged" for p in self.items)
        return (
            f"grafana push: {counts['created']} created, {counts['updated']} updated, "
            f"{unchanged} unchanged"
        )


@contextlib.contextmanager
def grafana_errors(url: str) -> Iterator[None]:
    """Translate grafana-client and HTTP errors into one ``ShouhuError`` with a fix hint."""
    try:
        yield
    except GrafanaUnauthorizedError as exc:
        raise ShouhuError(
            f"Grafana at {url} refused the token (HTTP 401)",
            hint="create a service account token with the Admin role and pass it with --token",
        ) from exc
    except GrafanaTimeoutError as exc:
        raise ShouhuError(
            f"Grafana at {url} timed out", hint="check --url and the network"
        ) from exc
    except GrafanaServerError as exc:
        raise ShouhuError(
            f"Grafana at {url} failed: {exc.message}", hint="see Grafana's server log"
        ) from exc
    except GrafanaClientError as exc:
        hint = (
            "the token's role is too low: use an Admin service account token"
            if exc.status_code == 403
            else "check the Grafana version (9.x or newer) and --url"
        )
        raise ShouhuError(f"Grafana at {url} refused a request: {exc.message}", hint=hint) from exc
    except (GrafanaException, niquests.exceptions.RequestException) as exc:
        raise ShouhuError(
            f"cannot reach Grafana at {url}: {exc}", hint="check --url and that Grafana runs"
        ) from exc


def _not_found(exc: GrafanaClientError) -> bool:
    return exc.status_code == 404


def _comparable(dashboard: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in dashboard.items() if k not in VOLATILE_KEYS}


def connect(url: str, token: str, *, timeout_s: float = 10.0) -> GrafanaApi:
    api = GrafanaApi.from_url(url, credential=TokenAuth(token), timeout=timeout_s)
    with grafana_errors(url):
        api.client.GET("/health")
    return api


def push_datasource(api: GrafanaApi, settings: InfluxSettings) -> Pushed:
    wanted = datasource(settings)
    try:
        current = api.datasource.get_datasource_by_uid(DATASOURCE_UID)
    except GrafanaClientError as exc:
        if not _not_found(exc):
            raise
        api.datasource.create_datasource(wanted)
        return Pushed("datasource", DATASOURCE_UID, "created")
    differs = any(current.get(k) != wanted.get(k) for k in DATASOURCE_KEYS)
    if not differs and not settings.password:  # a password cannot be read back to compare
        return Pushed("datasource", DATASOURCE_UID, "unchanged")
    api.datasource.update_datasource_by_uid(DATASOURCE_UID, wanted)
    return Pushed("datasource", DATASOURCE_UID, "updated")


def ensure_folder(api: GrafanaApi) -> Pushed:
    try:
        api.folder.get_folder(FOLDER_UID)
    except GrafanaClientError as exc:
        if not _not_found(exc):
            raise
        api.folder.create_folder(FOLDER_TITLE, uid=FOLDER_UID)
        return Pushed("folder", FOLDER_UID, "created")
    return Pushed("folder", FOLDER_UID, "unchanged")


def push_dashboard(api: GrafanaApi, dashboard: Mapping[str, Any]) -> Pushed:
    uid = str(dashboard["uid"])
    change: Change = "created"
    try:
        current = api.dashboard.get_dashboard(uid)
    except GrafanaClientError as exc:
        if not _not_found(exc):
            raise
    else:
        same_folder = current.get("meta", {}).get("folderUid") == FOLDER_UID
        if same_folder and _comparable(current.get("dashboard", {})) == _comparable(dashboard):
            return Pushed("dashboard", uid, "unchanged")
        change = "updated"
    api.dashboard.update_dashboard(
        {
            "dashboard": {**dashboard, "id": None},
            "folderUid": FOLDER_UID,
            "overwrite": True,
            "message": "shouhu grafana push",
        }
    )
    return Pushed("dashboard", uid, change)


def push(url: str, token: str, settings: InfluxSettings, *, timeout_s: float = 10.0) -> PushReport:
    """Create or update the datasource, the folder and every board; report what changed."""
    api = connect(url, token, timeout_s=timeout_s)
    items: list[Pushed] = []
    with grafana_errors(url):
        items.append(push_datasource(api, settings))
        items.append(ensure_folder(api))
        for board in dashboards().values():
            items.append(push_dashboard(api, board))
    return PushReport(tuple(items))
