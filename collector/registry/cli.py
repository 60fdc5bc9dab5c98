"""``shouhu registry ...`` and ``shouhu wearer ...``: keep the registry database by hand or by CSV.

Thin: click callbacks check the syntax of options (times, schedules, URLs, coordinates); the
store checks references and keys and raises a ``ShouhuError`` that ``shouhu.cli`` prints as one
line with how to fix it. ``--db`` defaults to ``$SHOUHU_REGISTRY`` or ``./registry.sqlite``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final, TypeVar

import click

from collector.domain import (
    Aed,
    Contact,
    Gateway,
    Household,
    PatrolBox,
    PatrolRoute,
    School,
    SmokeAlarm,
    Student,
    Wearer,
    Window,
)
from collector.registry.csv_import import (
    KIND_ALIASES,
    apply_import,
    check_contact_url,
    plan_import,
    summary,
)
from collector.registry.schema import check_hhmm, parse_days, parse_schedule
from collector.registry.store import (
    CONTACT_OWNERS,
    CONTACT_ROLES,
    KINDS,
    Entity,
    OwnedContact,
    RegistryStore,
    as_dict,
)
from shouhu.cardkey import card_key, is_card_key, load_key_file
from shouhu.exceptions import ShouhuError, StorageError

DEFAULT_DB: Final = "registry.sqlite"
_ID: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")

# kind -> the columns `list` shows (every field is in `show` and `list --json`)
TABLE_COLUMNS: Final[dict[str, tuple[str, ...]]] = {
    "gateways": ("id", "site", "zone", "lat", "lon"),
    "wearers": ("id", "name", "device", "home_gateways", "missing"),
    "aeds": ("id", "device", "expected_gateway", "location"),
    "households": ("id", "address", "district", "gateways"),
    "alarms": ("device", "household", "room"),
    "boxes": ("id", "device", "location"),
    "routes": ("id", "unit", "boxes", "schedule"),
    "schools": ("id", "name", "gateways", "not_arrived_by", "days"),
    "students": ("id", "name", "school", "card"),
    "contacts": ("id", "owner_kind", "owner_id", "name", "role", "order", "url"),
}

F = TypeVar("F", bound=Callable[..., Any])


def db_option(f: F) -> F:
    """``--db PATH``: the registry database (a path, ``sqlite:///path`` or ``postgresql://``)."""
    return click.option(
        "--db",
        envvar="SHOUHU_REGISTRY",
        default=DEFAULT_DB,
        show_default=True,
        help="Registry database (env SHOUHU_REGISTRY).",
    )(f)


@contextmanager
def open_store(db: str) -> Iterator[RegistryStore]:
    store = RegistryStore(db)
    try:
        yield store
    finally:
        store.close()


# --- option callbacks: syntax only, as click.BadParameter (exit 2 with usage) --------------------


def _checked(parse: Callable[[str], Any]) -> Callable[[click.Context, click.Parameter, Any], Any]:
    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if value is None or value == "":
            return None
        try:
            return parse(value)
        except ShouhuError as exc:
            raise click.BadParameter(exc.message) from exc

    return callback


def _ident(value: str) -> str:
    if not _ID.match(value):
        raise click.BadParameter(f"not an id: {value!r} (letters, digits, . _ : -)")
    return value


def _id_callback(ctx: click.Context, param: click.Parameter, value: str) -> str:
    return _ident(value)


def _url_callback(ctx: click.Context, param: click.Parameter, value: str) -> str:
    problem = check_contact_url(value)
    if problem:
        raise click.BadParameter(problem)
    return value


def _aes_key_callback(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    if not re.fullmatch(r"[0-9a-fA-F]{32}", value):
        raise click.BadParameter("an AES-128 key is 32 hex digits")
    return value.lower()


def _both_or_neither(lat: float | None, lon: float | None) -> None:
    if (lat is None) != (lon is None):
        raise click.UsageError("give both --lat and --lon, or neither")


LAT = click.option("--lat", type=click.FloatRange(-90, 90), help="Latitude (WGS84).")
LON = click.option("--lon", type=click.FloatRange(-180, 180), help="Longitude (WGS84).")
REPLACE = click.option("--replace", is_flag=True, help="Update the entry if it exists.")
ID_ARG = click.argument("entry_id", metavar="ID", callback=_id_callback)


# --- rendering ----------------------------------------------------------------------------------


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ";".join(_cell(v) for v in value)
    if isinstance(value, dict):
        return str(value.get("id", ""))
    return str(value)


def render_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """A plain text table (the first line holds the column names)."""
    cells = [list(columns)] + [[_cell(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    )


def render_entry(data: dict[str, Any]) -> str:
    """``field: value`` lines; nested entries (contacts, alarms) one per line below."""
    lines = []
    for name, value in data.items():
        if isinstance(value, list) and value and isinstance(value[0], dict):
            lines.append(f"{name}:")
            lines.extend(
                "  - " + "  ".join(f"{k}={_cell(v)}" for k, v in item.items()) for item in value
            )
        else:
            lines.append(f"{name}: {_cell(value)}")
    return "\n".join(lines)


# --- the generic verbs of every entity ----------------------------------------------------------


def _entity_group(kind: str, add: click.Command) -> click.Group:
    """A group ``<noun>`` with ``add`` (given), ``list``, ``show`` and ``remove``."""
    info = KINDS[kind]
    group = click.Group(info.noun, help=f"The registry's {kind}.")
    group.add_command(add, "add")

    @group.command("list")
    @click.option("--json", "as_json", is_flag=True, help="One JSON array with every field.")
    @db_option
    def list_(as_json: bool, db: str) -> None:

        with open_store(db) as store:
            rows = [as_dict(v) for v in store.items(kind)]
        if as_json:
            click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        else:
            click.echo(render_table(rows, TABLE_COLUMNS[kind]))

    @group.command("show")
    @click.argument("key", metavar="DEVICE" if kind == "alarms" else "ID")
    @click.option("--json", "as_json", is_flag=True, help="As JSON.")
    @db_option
    def show(key: str, as_json: bool, db: str) -> None:
        with open_store(db) as store:
            value = store.get(kind, key)
        if value is None:
            raise StorageError(
                f"unknown {info.noun} {key!r}", hint=f"see `shouhu registry {info.noun} list`"
            )
        data = as_dict(value)
        click.echo(
            json.dumps(data, ensure_ascii=False, indent=2) if as_json else render_entry(data)
        )

    @group.command("remove")
    @click.argument("key", metavar="DEVICE" if kind == "alarms" else "ID")
    @db_option
    def remove(key: str, db: str) -> None:
        with open_store(db) as store:
            if not store.remove(kind, key):
                raise StorageError(
                    f"unknown {info.noun} {key!r}", hint=f"see `shouhu registry {info.noun} list`"
                )
        click.echo(f"removed {info.noun} {key}")

    list_.help = f"List the {kind} (a table, or --json)."
    show.help = f"Show one {info.noun} with every field."
    remove.help = f"Remove a {info.noun} (and the contacts it owns)."
    return group


def _save(db: str, value: Entity, replace: bool) -> None:
    with open_store(db) as store:
        store.add(value, replace=replace)
    noun = KINDS[next(k for k, i in KINDS.items() if isinstance(value, i.type))].noun
    click.echo(
        f"{'saved' if replace else 'added'} {noun} {getattr(value, 'id', None) or getattr(value, 'device', '')}"
    )


# --- add, one per entity ------------------------------------------------------------------------


@click.command(help="Add a gateway (a site with a radio).")
@ID_ARG
@click.option("--site", required=True, help="Where it is, e.g. 'Dongsi Community Centre'.")
@click.option("--zone", default="", help="Zone name wearers' safe zones refer to.")
@LAT
@LON
@REPLACE
@db_option
def gateway_add(
    entry_id: str,
    site: str,
    zone: str,
    lat: float | None,
    lon: float | None,
    replace: bool,
    db: str,
) -> None:
    _both_or_neither(lat, lon)
    _save(db, Gateway(entry_id, site, zone, lat, lon), replace)


@click.command(help="Add a wearer (a person with dementia wearing a beacon amulet).")
@ID_ARG
@click.option("--name", required=True)
@click.option(
    "--device", required=True, help="Amulet device key, e.g. ibeacon:<uuid>:<major>:<minor>."
)
@click.option("--home-gateway", "home_gateways", multiple=True, help="Gateway at home (repeat).")
@click.option(
    "--safe-zone", "safe_zones", multiple=True, help="Zone where the wearer is safe (repeat)."
)
@click.option(
    "--risk-schedule",
    callback=_checked(parse_schedule),
    help="When leaving safety alerts, e.g. 'Mon-Fri 21:00-06:00; Sat,Sun 20:00-07:00'.",
)
@click.option("--home-by", callback=_checked(check_hhmm), help="HH:MM: not home by then alerts.")
@REPLACE
@db_option
def wearer_add(
    entry_id: str,
    name: str,
    device: str,
    home_gateways: tuple[str, ...],
    safe_zones: tuple[str, ...],
    risk_schedule: tuple[Window, ...] | None,
    home_by: str | None,
    replace: bool,
    db: str,
) -> None:
    missing = False
    if replace:  # a correction must not clear a missing-person report
        with open_store(db) as store:
            old = store.wearer(entry_id)
            missing = old.missing if old else False
    value = Wearer(
        entry_id,
        name,
        device,
        frozenset(home_gateways),
        frozenset(safe_zones),
        risk_schedule or (),
        home_by,
        missing,
    )
    _save(db, value, replace)


@click.command(help="Add an AED cabinet with its beacon.")
@ID_ARG
@click.option("--device", required=True, help="Beacon device key.")
@click.option("--gateway", "expected_gateway", required=True, help="Gateway that should hear it.")
@click.option("--location", default="")
@REPLACE
@db_option
def aed_add(
    entry_id: str, device: str, expected_gateway: str, location: str, replace: bool, db: str
) -> None:
    _save(db, Aed(entry_id, device, expected_gateway, location), replace)


@click.command(help="Add a household (its smoke alarms are added with `alarm add`).")
@ID_ARG
@click.option("--address", required=True)
@click.option("--district", default="")
@click.option("--gateway", "gateways", multiple=True, help="Gateway hearing its alarms (repeat).")
@REPLACE
@db_option
def household_add(
    entry_id: str, address: str, district: str, gateways: tuple[str, ...], replace: bool, db: str
) -> None:
    _save(db, Household(entry_id, address, frozenset(gateways), district), replace)


@click.command(help="Add a smoke alarm to a household.")
@click.argument("device")
@click.option("--household", required=True)
@click.option("--room", default="")
@REPLACE
@db_option
def alarm_add(device: str, household: str, room: str, replace: bool, db: str) -> None:
    _save(db, SmokeAlarm(device, household, room), replace)


@click.command(help="Add a patrol box (an NFC tag officers tap).")
@ID_ARG
@click.option("--device", required=True, help="NFC tag device key.")
@LAT
@LON
@click.option("--location", default="")
@click.option(
    "--sun-meta-key", callback=_aes_key_callback, help="NTAG 424 SDM meta read key (hex)."
)
@click.option(
    "--sun-file-key", callback=_aes_key_callback, help="NTAG 424 SDM file read key (hex)."
)
@REPLACE
@db_option
def box_add(
    entry_id: str,
    device: str,
    lat: float | None,
    lon: float | None,
    location: str,
    sun_meta_key: str | None,
    sun_file_key: str | None,
    replace: bool,
    db: str,
) -> None:
    _both_or_neither(lat, lon)
    value = PatrolBox(entry_id, device, lat, lon, location, sun_meta_key, sun_file_key)
    _save(db, value, replace)


@click.command(help="Add a patrol route: boxes in order, when, and the watch rule.")
@ID_ARG
@click.option("--unit", required=True, help="Officer or unit on this round.")
@click.option("--box", "boxes", multiple=True, required=True, help="Box id, in order (repeat).")
@click.option("--schedule", callback=_checked(parse_schedule), help="e.g. 'Mon-Sun 22:00-02:00'.")
@click.option("--min-stay-s", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--max-speed-kmh", type=click.FloatRange(min=1), default=60.0, show_default=True)
@REPLACE
@db_option
def route_add(
    entry_id: str,
    unit: str,
    boxes: tuple[str, ...],
    schedule: tuple[Window, ...] | None,
    min_stay_s: int,
    max_speed_kmh: float,
    replace: bool,
    db: str,
) -> None:
    value = PatrolRoute(entry_id, unit, boxes, schedule or (), min_stay_s, max_speed_kmh)
    _save(db, value, replace)


@click.command(help="Add a school whose gate gateways hear students' cards.")
@ID_ARG
@click.option("--name", required=True)
@click.option("--gateway", "gateways", multiple=True, help="Gateway at the gate (repeat).")
@click.option("--not-arrived-by", callback=_checked(check_hhmm), help="HH:MM; unset = off.")
@click.option("--days", callback=_checked(parse_days), default="Mon-Fri", show_default=True)
@REPLACE
@db_option
def school_add(
    entry_id: str,
    name: str,
    gateways: tuple[str, ...],
    not_arrived_by: str | None,
    days: frozenset[int],
    replace: bool,
    db: str,
) -> None:
    _save(db, School(entry_id, name, frozenset(gateways), not_arrived_by, days), replace)


@click.command(help="Add a student; a clear --card-uid is hashed and never stored.")
@ID_ARG
@click.option("--name", required=True)
@click.option("--school", required=True)
@click.option("--card", help="Card key, already hashed: card:<24 hex>.")
@click.option("--card-uid", help="Clear card UID (hex); needs --uid-hash-key-file.")
@click.option("--uid-hash-key-file", type=click.Path(dir_okay=False), help="Card hash key (hex).")
@REPLACE
@db_option
def student_add(
    entry_id: str,
    name: str,
    school: str,
    card: str | None,
    card_uid: str | None,
    uid_hash_key_file: str | None,
    replace: bool,
    db: str,
) -> None:
    if bool(card) == bool(card_uid):
        raise click.UsageError("give --card or --card-uid (one of them)")
    if card_uid:
        if not uid_hash_key_file:
            raise click.UsageError("--card-uid needs --uid-hash-key-file to hash the UID")
        card = card_key(card_uid, load_key_file(uid_hash_key_file))
    assert card is not None
    if not is_card_key(card):
        raise click.BadParameter("not a card key (card: + 24 hex digits)", param_hint="--card")
    _save(db, Student(entry_id, name, card, school), replace)


def _owner_callback(ctx: click.Context, param: click.Parameter, value: str) -> tuple[str, str]:
    owner_kind, sep, owner_id = value.partition(":")
    if not sep or owner_kind not in CONTACT_OWNERS or not owner_id:
        raise click.BadParameter(
            f"not KIND:ID with KIND one of {', '.join(CONTACT_OWNERS)}: {value!r}"
        )
    return owner_kind, owner_id


@click.command(help="Add someone to notify for a wearer, AED, household, route or student.")
@ID_ARG
@click.option(
    "--owner", required=True, callback=_owner_callback, help="KIND:ID, e.g. wearer:w-001."
)
@click.option("--name", required=True)
@click.option("--url", required=True, callback=_url_callback, help="Apprise URL, e.g. tgram://...")
@click.option("--role", type=click.Choice(CONTACT_ROLES), default="family", show_default=True)
@click.option(
    "--order", type=click.IntRange(min=0), default=0, show_default=True, help="Escalation order."
)
@REPLACE
@db_option
def contact_add(
    entry_id: str,
    owner: tuple[str, str],
    name: str,
    url: str,
    role: str,
    order: int,
    replace: bool,
    db: str,
) -> None:
    _save(db, OwnedContact(*owner, Contact(entry_id, name, url, role, order)), replace)


ADD_COMMANDS: Final[dict[str, click.Command]] = {
    "gateways": gateway_add,
    "wearers": wearer_add,
    "aeds": aed_add,
    "households": household_add,
    "alarms": alarm_add,
    "boxes": box_add,
    "routes": route_add,
    "schools": school_add,
    "students": student_add,
    "contacts": contact_add,
}


@click.group()
def registry() -> None:
    """The registry: gateways, wearers, AEDs, households, patrol boxes, schools, contacts.

    Personal data lives only here. Start with `shouhu registry import examples/registry/*.csv`.
    """


for _kind, _add in ADD_COMMANDS.items():
    registry.add_command(_entity_group(_kind, _add))


@registry.command("import")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--kind",
    type=click.Choice([*KINDS, *KIND_ALIASES]),
    help="What the files hold (default: from each file name, e.g. wearers.csv).",
)
@click.option(
    "--uid-hash-key-file",
    type=click.Path(exists=True, dir_okay=False),
    help="Card hash key (hex), to hash students' clear card_uid column.",
)
@db_option
def import_(
    files: tuple[str, ...], kind: str | None, uid_hash_key_file: str | None, db: str
) -> None:
    """Import CSV files: every row is checked first; any bad row and nothing is imported."""
    key = load_key_file(uid_hash_key_file) if uid_hash_key_file else None
    with open_store(db) as store:
        plan = plan_import(store, files, kind=kind, card_hash_key=key)
        if plan.errors:
            for error in plan.errors:
                click.echo(str(error), err=True)
            raise StorageError(
                f"{len(plan.errors)} problem(s) in {', '.join(Path(f).name for f in files)}; nothing imported",
                hint="fix the rows listed and import again",
            )
        counts = apply_import(store, plan)
    click.echo(summary(counts))


@registry.command("info")
@db_option
def info(db: str) -> None:
    """Schema version, change counter and how many entries of each kind."""
    with open_store(db) as store:
        change = store.changes()
        click.echo(f"database: {db}")
        click.echo(f"schema: v{store.schema_version()}")
        click.echo(f"changes: {change.counter}")
        for kind in KINDS:
            click.echo(f"{kind}: {len(store.items(kind))}")


# --- `shouhu wearer ...`: day-to-day actions on a wearer ------------------------------------------


@click.group()
def wearer() -> None:
    """Day-to-day actions on a wearer: report missing, found, show the trail."""


@wearer.command("mark-missing")
@click.argument("wearer_id", metavar="WEARER")
@db_option
def mark_missing(wearer_id: str, db: str) -> None:
    """Report a wearer missing: every sighting becomes a footprint notice to the contacts."""
    with open_store(db) as store:
        w = store.set_missing(wearer_id, True)
    click.echo(f"wearer {w.id} marked missing: every sighting now sends a footprint notice")


@wearer.command("mark-found")
@click.argument("wearer_id", metavar="WEARER")
@db_option
def mark_found(wearer_id: str, db: str) -> None:
    """The wearer is safe again: sightings are routine again."""
    with open_store(db) as store:
        w = store.set_missing(wearer_id, False)
    click.echo(f"wearer {w.id} marked found")


@wearer.command("trail")
@click.argument("wearer_id", metavar="WEARER")
@click.option(
    "--since", default="2h", show_default=True, help="How far back: 2h, 90m, 1d or an ISO time."
)
@click.option(
    "--geojson", "as_geojson", is_flag=True, help="GeoJSON FeatureCollection instead of a table."
)
@click.option(
    "--store",
    "store_path",
    envvar="SHOUHU_STORE",
    default=None,
    help="SQLite records store (writer path).",
)
@click.option(
    "--influx-url", envvar="SHOUHU_INFLUX_URL", default=None, help="InfluxDB URL (InfluxQL /query)."
)
@click.option("--database", envvar="SHOUHU_INFLUX_DB", default=None, help="InfluxDB database.")
@click.option("--username", envvar="SHOUHU_INFLUX_USER", default=None)
@click.option("--password", envvar="SHOUHU_INFLUX_PASSWORD", default=None)
@click.option("--tz", default="UTC", show_default=True, help="Time zone of the table's times.")
@db_option
def trail(
    wearer_id: str,
    since: str,
    as_geojson: bool,
    store_path: str | None,
    influx_url: str | None,
    database: str | None,
    username: str | None,
    password: str | None,
    tz: str,
    db: str,
) -> None:
    """The wearer's footprints: where their amulet was heard, with the gateways' places."""
    import time

    from collector import trail as tr

    if (store_path is None) == (influx_url is None):
        raise click.UsageError("give either --store PATH or --influx-url URL --database NAME")
    if influx_url is not None and not database:
        raise click.UsageError("--influx-url needs --database")
    with open_store(db) as store:
        w = store.wearer(wearer_id)
        if w is None:
            raise StorageError(
                f"no wearer {wearer_id!r}", hint="see `shouhu registry list wearers`"
            )
        gateways = {g.id: g for g in store.gateways()}
    since_ms = tr.parse_since(since, int(time.time() * 1000))
    if store_path is not None:
        rows = tr.sightings_from_sqlite(store_path, w.device, since_ms)
    else:
        assert influx_url is not None and database is not None
        rows = tr.sightings_from_influx(
            influx_url, database, w.device, since_ms, username=username, password=password
        )
    steps = tr.footprints(rows, gateways)
    if as_geojson:
        click.echo(json.dumps(tr.trail_geojson(steps, w.id), indent=2))
    elif not steps:
        click.echo(f"no sightings of wearer {w.id} since {since}")
    else:
        click.echo(tr.trail_table(steps, tz))
