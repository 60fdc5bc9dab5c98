"""Device profiles: the YAML documents in ``device_profiles/`` (docs/device-profiles.md).

A profile says which frames it matches, which built-in decoder reads them, what readings come
out and what they mean for alerts. Loading validates the whole document and reports the file
and the field that is wrong.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, NoReturn

import yaml

from edge_agent.decoders import DECODERS
from shouhu.exceptions import ProfileError
from shouhu.model import STREAMS

Transport = Literal["ble", "nfc", "serial"]


@dataclass(frozen=True, slots=True)
class GoldenFrame:
    """An example frame shipped with a profile and the reading(s) it must decode to."""

    name: str
    payload: bytes  # BLE: AD structures; NFC: tag dump / URL; serial: one line
    meta: Mapping[str, Any]
    expect: tuple[
        Mapping[str, Any], ...
    ]  # each: subset of {kind, device, data{...}}; () = no match


@dataclass(frozen=True, slots=True)
class AlertSemantics:
    """What a profile's readings mean to the rule engine."""

    severity: Mapping[str, str] = field(default_factory=dict)  # event -> info|warning|critical
    supervision_s: int | None = None  # expected reporting interval; silence → supervision lost
    battery_low_mv: int | None = None
    battery_low_pct: int | None = None
    debounce_s: float = 0.0


@dataclass(frozen=True, slots=True)
class Profile:
    id: str
    version: int
    transport: Transport
    decoder: str  # a name in edge_agent.decoders.DECODERS
    description: str = ""
    match: Mapping[str, Any] = field(default_factory=dict)  # decoder-specific matchers
    options: Mapping[str, Any] = field(default_factory=dict)  # decoder-specific options
    readings: tuple[str, ...] = ()  # streams this profile emits
    alerts: AlertSemantics = field(default_factory=AlertSemantics)
    golden: tuple[GoldenFrame, ...] = ()
    source_path: str | None = None

    @property
    def ref(self) -> str:
        """``id@version`` as carried in every record."""
        return f"{self.id}@{self.version}"


# ---------------------------------------------------------------------------------------------
# Loading and validation
# ---------------------------------------------------------------------------------------------

PROFILE_ID_RE: Final = re.compile(r"^[a-z0-9][a-z0-9-]*$")
TRANSPORTS: Final[tuple[Transport, ...]] = ("ble", "nfc", "serial")
SEVERITIES: Final = ("info", "warning", "critical")
TOP_KEYS: Final = frozenset(
    {"id", "version", "transport", "description", "decoder", "match", "options", "readings"}
    | {"alerts", "golden"}
)
REQUIRED_KEYS: Final = ("id", "version", "transport", "decoder", "readings")
ALERT_KEYS: Final = frozenset(
    {"severity", "supervision_s", "battery_low_mv", "battery_low_pct", "debounce_s"}
)
GOLDEN_KEYS: Final = frozenset({"name", "payload", "payload_text", "meta", "expect"})
EXPECT_KEYS: Final = frozenset({"kind", "device", "data"})

# A path into a YAML document, e.g. ("golden", 0, "expect"), and the line each path starts on.
FieldPath = tuple[str | int, ...]
LineMap = dict[FieldPath, int]


def dotted(path: FieldPath) -> str:
    """``("golden", 0, "meta")`` -> ``"golden[0].meta"`` (how errors name a field)."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out or "(document)"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class _Checker:
    """Reports the first schema violation as ``FILE:LINE: field.path: expected ..., got X``."""

    def __init__(self, source: str, lines: LineMap) -> None:
        self.source = source
        self.lines = lines

    def where(self, path: FieldPath) -> str:
        for end in range(len(path), -1, -1):  # the field, or the nearest parent that has a line
            line = self.lines.get(path[:end])
            if line is not None:
                return f"{self.source}:{line}"
        return self.source

    def fail(self, path: FieldPath, message: str) -> NoReturn:
        raise ProfileError(f"{self.where(path)}: {dotted(path)}: {message}")

    def expected(self, path: FieldPath, what: str, got: Any) -> NoReturn:
        self.fail(path, f"expected {what}, got {_short(got)}")

    def mapping(self, path: FieldPath, value: Any) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            self.expected(path, "a mapping", value)
        for key in value:
            if not isinstance(key, str):
                self.expected(path, "string keys", key)
        return value

    def keys(self, path: FieldPath, value: Mapping[str, Any], allowed: frozenset[str]) -> None:
        for key in value:
            if key not in allowed:
                self.fail((*path, key), f"unknown key (allowed: {', '.join(sorted(allowed))})")

    def string(self, path: FieldPath, value: Any) -> str:
        if not isinstance(value, str):
            self.expected(path, "a string", value)
        return value

    def integer(self, path: FieldPath, value: Any, minimum: int, maximum: int | None = None) -> int:
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= minimum
        if not ok or (maximum is not None and value > maximum):
            bound = f"{minimum}..{maximum}" if maximum is not None else f">= {minimum}"
            self.expected(path, f"an integer {bound}", value)
        return int(value)

    def number(self, path: FieldPath, value: Any, minimum: float) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
            self.expected(path, f"a number >= {minimum}", value)
        return float(value)

    def sequence(self, path: FieldPath, value: Any) -> list[Any]:
        if not isinstance(value, list):
            self.expected(path, "a list", value)
        return value


def _line_map(node: yaml.Node, path: FieldPath, lines: LineMap, source: str) -> None:
    """Record the (1-based) line of every field; reject duplicate keys, which YAML would hide."""
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            if key in seen:
                raise ProfileError(
                    f"{source}:{key_node.start_mark.line + 1}: {dotted((*path, key))}: duplicate key"
                )
            seen.add(key)
            _line_map(value_node, (*path, key), lines, source)
            lines[(*path, key)] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _line_map(item, (*path, index), lines, source)


def _read_yaml(text: str, source: str) -> tuple[Any, LineMap]:
    lines: LineMap = {}
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        problem = getattr(exc, "problem", None) or str(exc)
        raise ProfileError(f"{where}: not valid YAML: {problem}") from exc
    if node is not None:
        _line_map(node, (), lines, source)
    return doc, lines


def load_profile(path: Path | str) -> Profile:
    """Read and validate one profile file."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileError(f"{file}: cannot read profile: {exc}") from exc
    doc, lines = _read_yaml(text, str(file))
    return _parse(doc, str(file), lines)


def parse_profile_text(text: str, source: str) -> Profile:
    """Validate a profile given as YAML text (e.g. from a signed bundle), with line numbers."""
    doc, lines = _read_yaml(text, source)
    return _parse(doc, source, lines)


def parse_profile(doc: Mapping[str, Any], source: str) -> Profile:
    """Validate an already parsed profile document (e.g. from a bundle); ``source`` names it."""
    return _parse(doc, source, {})


def _profile_files(paths: Sequence[Path | str] | None) -> list[Path]:
    from device_profiles import PROFILES_DIR

    files: list[Path] = []
    for entry in [PROFILES_DIR] if paths is None else [Path(p) for p in paths]:
        if entry.is_dir():
            files.extend(sorted(entry.glob("*.yaml")))
        elif entry.exists():
            files.append(entry)
        else:
            raise ProfileError(f"{entry}: no such file or directory")
    return files


def load_profiles(paths: Sequence[Path | str] | None = None) -> dict[str, Profile]:
    """Load every profile from ``paths`` (files or directories; ``None`` = the shipped ones).

    The result is keyed and ordered by profile id; the same id twice is an error, since a
    frame must map to exactly one profile version.
    """
    loaded: dict[str, Profile] = {}
    for file in _profile_files(paths):
        profile = load_profile(file)
        if profile.id in loaded:
            raise ProfileError(
                f"{file}: id: duplicate profile id {profile.id!r} "
                f"(also in {loaded[profile.id].source_path})"
            )
        loaded[profile.id] = profile
    return dict(sorted(loaded.items()))


def _parse(doc: Any, source: str, lines: LineMap) -> Profile:
    check = _Checker(source, lines)
    root = check.mapping((), doc)
    check.keys((), root, TOP_KEYS)
    for key in REQUIRED_KEYS:
        if key not in root:
            check.fail((key,), "required field is missing")

    profile_id = check.string(("id",), root["id"])
    if not PROFILE_ID_RE.match(profile_id):
        check.expected(("id",), "lowercase letters, digits and '-' ([a-z0-9-])", profile_id)
    version = check.integer(("version",), root["version"], 1)
    transport = root["transport"]
    if transport not in TRANSPORTS:
        check.expected(("transport",), f"one of {', '.join(TRANSPORTS)}", transport)
    description = check.string(("description",), root.get("description", "") or "")
    decoder = check.string(("decoder",), root["decoder"])
    if decoder not in DECODERS:
        check.expected(("decoder",), f"one of {', '.join(sorted(DECODERS))}", decoder)
    match = check.mapping(("match",), root.get("match") or {})
    options = check.mapping(("options",), root.get("options") or {})

    readings_raw = check.sequence(("readings",), root["readings"])
    if not readings_raw:
        check.fail(("readings",), "expected at least one stream, got []")
    for index, stream in enumerate(readings_raw):
        if stream not in STREAMS:
            check.expected(("readings", index), f"one of {', '.join(STREAMS)}", stream)
    readings = tuple(str(s) for s in readings_raw)

    alerts = _parse_alerts(check, root.get("alerts") or {})
    golden = tuple(
        _parse_golden(check, ("golden", index), item, readings)
        for index, item in enumerate(check.sequence(("golden",), root.get("golden") or []))
    )
    profile = Profile(
        id=profile_id,
        version=version,
        transport=transport,
        decoder=decoder,
        description=description.strip(),
        match=dict(match),
        options=dict(options),
        readings=readings,
        alerts=alerts,
        golden=golden,
        source_path=source,
    )
    _decoder_hook(check, profile)
    return profile


def _parse_alerts(check: _Checker, value: Any) -> AlertSemantics:
    path: FieldPath = ("alerts",)
    alerts = check.mapping(path, value)
    check.keys(path, alerts, ALERT_KEYS)
    severity = check.mapping((*path, "severity"), alerts.get("severity") or {})
    for event, level in severity.items():
        if level not in SEVERITIES:
            check.expected((*path, "severity", event), f"one of {', '.join(SEVERITIES)}", level)

    def optional_int(key: str, minimum: int, maximum: int | None = None) -> int | None:
        raw = alerts.get(key)
        return None if raw is None else check.integer((*path, key), raw, minimum, maximum)

    debounce = alerts.get("debounce_s")
    return AlertSemantics(
        severity=dict(severity),
        supervision_s=optional_int("supervision_s", 1),
        battery_low_mv=optional_int("battery_low_mv", 1),
        battery_low_pct=optional_int("battery_low_pct", 0, 100),
        debounce_s=0.0 if debounce is None else check.number((*path, "debounce_s"), debounce, 0),
    )


def _parse_golden(
    check: _Checker, path: FieldPath, value: Any, readings: tuple[str, ...]
) -> GoldenFrame:
    item = check.mapping(path, value)
    check.keys(path, item, GOLDEN_KEYS)
    name = check.string((*path, "name"), item.get("name"))
    has_hex, has_text = "payload" in item, "payload_text" in item
    if has_hex == has_text:
        check.fail(path, "expected exactly one of payload (hex) or payload_text")
    if has_hex:
        hex_text = check.string((*path, "payload"), item["payload"])
        try:
            payload = bytes.fromhex(hex_text.replace(":", " "))
        except ValueError:
            check.expected((*path, "payload"), "hex bytes", hex_text)
    else:
        payload = check.string((*path, "payload_text"), item["payload_text"]).encode("utf-8")
    meta = check.mapping((*path, "meta"), item.get("meta") or {})
    if "expect" not in item:
        check.fail((*path, "expect"), "required field is missing (use [] for no match)")
    expect: list[Mapping[str, Any]] = []
    for index, raw in enumerate(check.sequence((*path, "expect"), item["expect"])):
        epath = (*path, "expect", index)
        one = check.mapping(epath, raw)
        check.keys(epath, one, EXPECT_KEYS)
        if "kind" in one and one["kind"] not in readings:
            check.expected(
                (*epath, "kind"), f"one of readings [{', '.join(readings)}]", one["kind"]
            )
        if "device" in one:
            check.string((*epath, "device"), one["device"])
        if "data" in one:
            check.mapping((*epath, "data"), one["data"])
        expect.append(dict(one))
    return GoldenFrame(name=name, payload=payload, meta=dict(meta), expect=tuple(expect))


_HOOK_PATH = re.compile(r"^(?P<path>[A-Za-z_][\w.\[\]-]*): ")


def _decoder_hook(check: _Checker, profile: Profile) -> None:
    """Let the decoder's module check its own ``match``/``options`` (``validate_profile``)."""
    module_name = DECODERS[profile.decoder].split(":")[0]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        check.fail(("decoder",), f"decoder module {module_name} cannot be imported: {exc}")
    hook = getattr(module, "validate_profile", None)
    if hook is None:
        return
    try:
        hook(profile)
    except ProfileError as exc:
        found = _HOOK_PATH.match(exc.message)
        field_path: FieldPath = ()
        if found:
            parts = re.findall(r"[^.\[\]]+|\[\d+\]", found["path"])
            field_path = tuple(int(p[1:-1]) if p.startswith("[") else p for p in parts)
        raise ProfileError(f"{check.where(field_path)}: {exc.message}", hint=exc.hint) from exc
