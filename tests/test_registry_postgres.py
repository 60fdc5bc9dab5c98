"""The registry store on a real PostgreSQL: the same assertions as on SQLite, plus scale-out.

The SQLite suites' tests that take a ``store`` run here again unchanged: they are imported below,
and pytest hands them this module's ``store`` fixture, a ``RegistryStore`` on a fresh database of
the private PostgreSQL that ``tests/services.py`` starts. What only PostgreSQL can show (two
collectors on one database, a server restart, concurrent migration) is tested after them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
import test_registry_cli as cli_suite
import test_registry_import as import_suite
import test_registry_store as store_suite
from services import PostgreSQL, free_port

from collector.domain import Gateway, Wearer
from collector.registry.csv_import import import_csv
from collector.registry.schema import LATEST_VERSION
from collector.registry.store import RegistryStore
from shouhu.exceptions import StorageError, StorageUnavailable

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "registry"


@pytest.fixture
def pg_url(postgres: PostgreSQL, unique_name: Callable[[str], str]) -> Iterator[str]:
    """The URL of a fresh, empty database of this test alone (dropped afterwards)."""
    name = unique_name("reg")
    url = postgres.create_database(name)
    yield url
    if postgres.running:
        postgres.drop_database(name)


@pytest.fixture
def store(pg_url: str) -> Iterator[RegistryStore]:
    s = RegistryStore(pg_url)
    yield s
    s.close()


@pytest.fixture
def db(pg_url: str) -> str:
    """What the CLI suite passes as ``--db`` / ``$SHOUHU_REGISTRY``."""
    return pg_url


# --- the SQLite suites, unchanged, on PostgreSQL ---------------------------------------------------

test_every_entity_round_trips = store_suite.test_every_entity_round_trips
test_snapshot_view_answers_the_rules_lookups = (
    store_suite.test_snapshot_view_answers_the_rules_lookups
)
test_change_counter_moves_on_every_write_only = (
    store_suite.test_change_counter_moves_on_every_write_only
)
test_add_refuses_an_existing_key_unless_replace = (
    store_suite.test_add_refuses_an_existing_key_unless_replace
)
test_unknown_reference_is_refused_with_a_hint = (
    store_suite.test_unknown_reference_is_refused_with_a_hint
)
test_a_failed_batch_writes_nothing = store_suite.test_a_failed_batch_writes_nothing
test_device_belongs_to_one_entry = store_suite.test_device_belongs_to_one_entry
test_remove_refuses_entries_still_in_use_and_cascades_owned_ones = (
    store_suite.test_remove_refuses_entries_still_in_use_and_cascades_owned_ones
)
test_set_missing_and_found = store_suite.test_set_missing_and_found

test_examples_import_cleanly_in_dependency_order = (
    import_suite.test_examples_import_cleanly_in_dependency_order
)
test_reimport_updates_in_place = import_suite.test_reimport_updates_in_place
test_a_file_without_missing_column_keeps_the_flag = (
    import_suite.test_a_file_without_missing_column_keeps_the_flag
)
test_every_bad_row_is_reported_and_nothing_imported = (
    import_suite.test_every_bad_row_is_reported_and_nothing_imported
)
test_ranges_urls_roles_and_columns_are_checked = (
    import_suite.test_ranges_urls_roles_and_columns_are_checked
)
test_references_resolve_across_files_of_one_import = (
    import_suite.test_references_resolve_across_files_of_one_import
)
test_clear_card_uids_are_hashed_with_the_key_and_never_stored = (
    import_suite.test_clear_card_uids_are_hashed_with_the_key_and_never_stored
)

test_cli_import_examples_then_list_and_show = cli_suite.test_import_examples_then_list_and_show
test_cli_bad_file_lists_every_row_and_exits_1 = cli_suite.test_bad_file_lists_every_row_and_exits_1
test_cli_add_show_remove_a_gateway_and_a_wearer = (
    cli_suite.test_add_show_remove_a_gateway_and_a_wearer
)
test_cli_unknown_reference_says_how_to_fix = cli_suite.test_unknown_reference_says_how_to_fix
test_cli_student_card_uid_is_hashed = cli_suite.test_student_card_uid_is_hashed
test_cli_wearer_mark_missing_and_found = cli_suite.test_wearer_mark_missing_and_found


def test_cli_unreachable_server_is_one_line_and_an_error_exit() -> None:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/registry"
    code, out, err = cli_suite.run(url, "registry", "gateway", "list")
    assert code != 0 and out == ""
    assert "cannot reach the registry database" in err and "Traceback" not in err


# --- what differs: the counterparts of the SQLite-path tests -----------------------------------------


def test_data_survives_reopening(pg_url: str) -> None:
    with RegistryStore(pg_url) as first:
        v = store_suite._filled(first)
    with RegistryStore(pg_url) as again:
        assert again.schema_version() == LATEST_VERSION
        assert again.wearers() == (v["wearer"],)
        assert again.snapshot().view().routes_with_box("box-1") == (v["route"],)


def test_newer_schema_is_refused(pg_url: str) -> None:
    RegistryStore(pg_url).close()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("INSERT INTO schema_version (version) VALUES (99)")
    with pytest.raises(StorageError, match="newer"):
        RegistryStore(pg_url)


def test_the_import_reads_back_the_same_as_on_sqlite(store: RegistryStore, tmp_path: Path) -> None:
    """Same files, same snapshot (less the change time): no type, precision or order drifts."""
    files = sorted(EXAMPLES.glob("*.csv"))
    with RegistryStore(tmp_path / "registry.sqlite") as lite:
        assert import_csv(store, files) == import_csv(lite, files)
        on_pg, on_lite = store.snapshot(), lite.snapshot()
        assert store.contacts() == lite.contacts()
    assert on_pg.change.counter == on_lite.change.counter
    assert (on_pg.gateways, on_pg.wearers, on_pg.aeds) == (
        on_lite.gateways,
        on_lite.wearers,
        on_lite.aeds,
    )
    assert (on_pg.households, on_pg.boxes, on_pg.routes) == (
        on_lite.households,
        on_lite.boxes,
        on_lite.routes,
    )
    assert (on_pg.schools, on_pg.students) == (on_lite.schools, on_lite.students)


def test_keys_sort_by_code_point_as_on_sqlite(
    postgres: PostgreSQL, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    """A database with a natural-language collation (en-US) would sort ``gw-a`` before
    ``gw-B`` and ``gw-_`` first; the registry's columns compare by code point anyway."""
    name = unique_name("icu")
    url = postgres.create_database(name, icu_locale="en-US")
    ids = ["gw-b", "gw-B", "gw-10", "gw-9", "gw-a", "gw-_", "gw-é"]
    try:
        with RegistryStore(url) as pg, RegistryStore(tmp_path / "registry.sqlite") as lite:
            for s in (pg, lite):
                s.add_all([Gateway(i, "site") for i in ids])
            assert [g.id for g in pg.gateways()] == [g.id for g in lite.gateways()] == sorted(ids)
    finally:
        postgres.drop_database(name)


def test_coordinates_and_change_times_keep_full_precision(store: RegistryStore) -> None:
    gw = Gateway("gw-1", "x", "", 39.931234567891, 116.412345678912)
    store.add(gw)
    assert store.gateway("gw-1") == gw
    assert store.changes().changed_ms > 2**31  # ms since the epoch: more than 32 bits


def test_text_postgresql_cannot_store_is_a_storage_error(store: RegistryStore) -> None:
    with pytest.raises(StorageError):
        store.add(Gateway("gw-1", "nul\x00byte"))
    assert store.gateways() == ()
    store.add(Gateway("gw-1", "fine"))  # the store is still usable


# --- scale-out: several collectors on one database ----------------------------------------------------


def test_two_stores_see_each_others_changes(pg_url: str) -> None:
    with RegistryStore(pg_url) as a, RegistryStore(pg_url) as b:
        seen = b.changes()
        a.add(Gateway("gw-1", "Dongsi"))
        moved = b.changes()
        assert moved.counter == seen.counter + 1 and moved.changed_ms > 0
        assert b.snapshot().gateways == (Gateway("gw-1", "Dongsi"),)
        b.add(Wearer("w-1", "A", "ibeacon:x:1:1", frozenset({"gw-1"})))
        assert a.changes().counter == moved.counter + 1
        assert a.set_missing("w-1", True).missing
        assert b.wearer("w-1").missing  # type: ignore[union-attr]
        assert a.changes() == b.changes()


def test_concurrent_writers_lose_no_write(pg_url: str) -> None:
    stores = [RegistryStore(pg_url) for _ in range(3)]
    errors: list[BaseException] = []

    def write(s: RegistryStore, n: int) -> None:
        try:
            for i in range(10):
                s.add(Gateway(f"gw-{n}-{i}", "x"))
                s.add(Gateway("gw-shared", f"by {n}"), replace=True)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(s, n)) for n, s in enumerate(stores)]
    start = stores[0].changes().counter
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    try:
        assert errors == []
        assert len(stores[1].gateways()) == 31
        assert stores[2].changes().counter == start + 60
    finally:
        for s in stores:
            s.close()


def test_collectors_starting_together_migrate_once(pg_url: str) -> None:
    opened: list[RegistryStore] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def open_store() -> None:
        barrier.wait(10)
        try:
            opened.append(RegistryStore(pg_url))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    try:
        assert errors == []
        assert [s.schema_version() for s in opened] == [LATEST_VERSION] * 4
        assert opened[0].changes().counter == 0
    finally:
        for s in opened:
            s.close()


def test_a_restarted_server_is_unavailable_then_used_again(
    postgres: PostgreSQL, store: RegistryStore
) -> None:
    store.add(Gateway("gw-1", "x"))
    try:
        postgres.stop()
        with pytest.raises(StorageUnavailable):
            store.gateways()
    finally:
        postgres.start()
    assert store.gateways() == (Gateway("gw-1", "x"),)  # reconnected by itself
    store.add(Gateway("gw-2", "y"))
    assert len(store.gateways()) == 2
