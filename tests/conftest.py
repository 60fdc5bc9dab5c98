"""Shared fixtures: private real services (started lazily, once per session) and unique names.

A test that asks for ``mosquitto``, ``influxdb1``, ``victoria`` or ``postgres`` gets the ``services`` marker
automatically, so ``pytest -m "not services"`` runs everything that needs no server.
A test that stops or kills a session service must start it again before it ends (use
``service.restart()`` in a ``finally``) or create its own instance from ``tests/services.py``.
"""

from __future__ import annotations

import re
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from services import InfluxDB1, Mosquitto, PostgreSQL, VictoriaMetrics  # noqa: E402

SERVICE_FIXTURES = frozenset({"mosquitto", "influxdb1", "victoria", "postgres"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SERVICE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.services)


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """A private Mosquitto 2 on a free loopback port (``.host``, ``.port``)."""
    broker = Mosquitto(tmp_path_factory.mktemp("mosquitto"))
    with broker:
        yield broker


@pytest.fixture(scope="session")
def influxdb1(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxDB1]:
    """A private InfluxDB 1.x (``.url`` is its HTTP API)."""
    server = InfluxDB1(tmp_path_factory.mktemp("influxd"))
    with server:
        yield server


@pytest.fixture(scope="session")
def victoria(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VictoriaMetrics]:
    """A private VictoriaMetrics (``.url``; ``.force_flush()`` before reading back)."""
    server = VictoriaMetrics(tmp_path_factory.mktemp("victoria"))
    with server:
        yield server


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgreSQL]:
    """A private PostgreSQL (``.url``; ``.create_database(name)`` for a fresh database)."""
    server = PostgreSQL(tmp_path_factory.mktemp("postgres"))
    with server:
        yield server


def _slug(request: pytest.FixtureRequest) -> str:
    return re.sub(r"[^a-z0-9]+", "_", request.node.name.lower()).strip("_")[:40] or "test"


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """``unique_name("db")`` → a name no other test (or earlier run) uses: ``db_<test>_<hex>``."""
    token = uuid.uuid4().hex[:8]
    slug = _slug(request)
    return lambda prefix: f"{prefix}_{slug}_{token}"


@pytest.fixture
def unique_topic(unique_name: Callable[[str], str]) -> str:
    """A topic prefix of this test alone, e.g. ``shouhu-test/test_x_1a2b3c4d``."""
    return "shouhu-test/" + unique_name("t")


@pytest.fixture
def unique_db(unique_name: Callable[[str], str]) -> str:
    """An InfluxDB database (or bucket) name of this test alone."""
    return unique_name("db")
