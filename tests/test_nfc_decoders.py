"""NFC decoders: SUN taps, UID taps, school cards; whole readings asserted, fuzzed with a seed."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import ndef
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.sun import verify_sun
from edge_agent.decoders.nfc import (
    SecretBytes,
    decode_sun_tap,
    decode_uid_tap,
    ndef_uris,
    validate_profile,
)
from shouhu.cardkey import card_key
from shouhu.exceptions import DecodeError, ProfileError
from shouhu.model import RawFrame, Reading
from shouhu.profiles import Profile, load_profiles

TS = 1_763_800_000_001
PROFILES = load_profiles()
SUN = PROFILES["patrol-ntag424"]
NTAG21X = PROFILES["patrol-ntag21x"]
CARD = PROFILES["student-card"]
KEY = bytes(range(32))
HOST = "https://patrol.shouhu.example/t"
AN12196 = "picc_data=EF963FF7828658A599F3041510671E88&cmac=94EED9EE65337086"


def message(*uris: str) -> bytes:
    return b"".join(ndef.message_encoder([ndef.UriRecord(u) for u in uris]))


def frame(payload: bytes, **meta: Any) -> RawFrame:
    base: dict[str, Any] = {
        "uid": "04de5f1eacc040",
        "technology": "Type4Tag",
        "product": "NXP NTAG424DNA",
    }
    base.update(meta)
    return RawFrame("nfc0", TS, payload, {k: v for k, v in base.items() if v is not None})


# -- NTAG 424 DNA SUN -----------------------------------------------------------------------


def test_encrypted_sun_tap_whole_reading_and_it_verifies_in_the_cloud() -> None:
    (reading,) = decode_sun_tap(frame(message(f"{HOST}?{AN12196}")), SUN)
    assert reading == Reading(
        TS,
        "tap",
        "patrol-ntag424@1",
        "nfc:04de5f1eacc040",
        {
            "technology": "Type4Tag",
            "url_host": "patrol.shouhu.example",
            "sun_mode": "encrypted",
            "picc_data": "EF963FF7828658A599F3041510671E88",
            "cmac": "94EED9EE65337086",
            "clone_proof": True,
        },
    )
    verdict = verify_sun(reading.data["picc_data"], reading.data["cmac"], "00" * 16, "00" * 16, 0)
    assert verdict.ok and verdict.uid == "04de5f1eacc040"


def test_plain_sun_tap_carries_the_counter_and_flags_a_copied_url() -> None:
    url = f"{HOST}?uid=041E3C8A2D6B80&ctr=000006&cmac=4B00064004B0B3D3"
    (same,) = decode_sun_tap(frame(message(url), uid="041e3c8a2d6b80"), SUN)
    assert same.device == "nfc:041e3c8a2d6b80"
    assert same.data["counter"] == 6 and same.data["sun_mode"] == "plain"
    assert "uid_mismatch" not in same.data
    (copied,) = decode_sun_tap(frame(message(url), uid="04aaaaaaaaaaaa"), SUN)
    assert copied.device == "nfc:04aaaaaaaaaaaa" and copied.data["uid_mismatch"] is True
    assert verify_sun(same.data["picc_data"], same.data["cmac"], "00" * 16, "00" * 16, 5).ok


def test_random_uid_uses_the_box_parameter_or_fails() -> None:
    (reading,) = decode_sun_tap(frame(message(f"{HOST}?box=b-9&{AN12196}"), uid="08123456"), SUN)
    assert reading.device == "nfc-sun:b-9" and reading.data["box"] == "b-9"
    with pytest.raises(DecodeError, match="randomised UID"):
        decode_sun_tap(frame(message(f"{HOST}?{AN12196}"), uid=None), SUN)


def test_encrypted_file_data_is_forwarded() -> None:
    url = f"{HOST}?{AN12196}&enc=CEE9A53E3E463EF1F459635736738962"
    (reading,) = decode_sun_tap(frame(message(url)), SUN)
    assert reading.data["enc"] == "CEE9A53E3E463EF1F459635736738962"


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        message("https://example.com/hello"),
        message("https://patrol.shouhu.example.evil.com/t?" + AN12196),
        b"".join(ndef.message_encoder([ndef.TextRecord("patrol.shouhu.example")])),
    ],
)
def test_not_a_patrol_sun_tag_gives_no_reading(payload: bytes) -> None:
    assert decode_sun_tap(frame(payload), SUN) == []


def test_other_technology_is_not_a_sun_tag() -> None:
    assert decode_sun_tap(frame(message(f"{HOST}?{AN12196}"), technology="Type2Tag"), SUN) == []


@pytest.mark.parametrize(
    "query",
    [
        "picc_data=EF963FF7828658A599F3041510671E88",  # no MAC
        "cmac=94EED9EE65337086",  # no PICCData
        "picc_data=EF963FF7828658A599F3041510671E&cmac=94EED9EE65337086",  # truncated
        "picc_data=EF963FF7828658A599F3041510671E88&cmac=94EED9EE653370",
        "picc_data=XX963FF7828658A599F3041510671E88&cmac=94EED9EE65337086",
        "uid=041E3C8A2D6B80&cmac=4B00064004B0B3D3",  # plain without counter
        f"{AN12196}&enc=ABC",
        f"{AN12196}&box=../../etc",
    ],
)
def test_patrol_url_with_broken_sun_parameters_is_a_decode_error(query: str) -> None:
    with pytest.raises(DecodeError):
        decode_sun_tap(frame(message(f"{HOST}?{query}")), SUN)


def test_malformed_ndef_and_meta_are_decode_errors() -> None:
    with pytest.raises(DecodeError, match="NDEF"):
        decode_sun_tap(frame(b"\xd1\x01\x40U\x04abc"), SUN)
    with pytest.raises(DecodeError, match="uid"):
        decode_sun_tap(frame(message(f"{HOST}?{AN12196}"), uid="not-hex"), SUN)


# -- UID-only taps --------------------------------------------------------------------------


def test_ntag21x_patrol_sticker_whole_reading() -> None:
    f = frame(
        message("https://patrol.shouhu.example/b/b-204"),
        uid="04a1b2c3d4e5f6",
        technology="Type2Tag",
        product="NXP NTAG213",
    )
    assert decode_uid_tap(f, NTAG21X) == [
        Reading(
            TS,
            "tap",
            "patrol-ntag21x@1",
            "nfc:04a1b2c3d4e5f6",
            {"technology": "Type2Tag", "product": "NXP NTAG213", "clone_proof": False},
        )
    ]


def test_ntag21x_profile_ignores_other_tags() -> None:
    ultralight = frame(
        b"", uid="04a1b2c3d4e5f6", technology="Type2Tag", product="NXP MIFARE Ultralight"
    )
    type4 = frame(b"", uid="04a1b2c3d4e5f6", technology="Type4Tag", product="NXP NTAG213")
    assert decode_uid_tap(ultralight, NTAG21X) == []
    assert decode_uid_tap(type4, NTAG21X) == []


def test_student_card_uid_is_hashed_and_never_in_the_reading() -> None:
    f = frame(
        b"",
        uid="a1b2c3d4",
        technology="Type4Tag",
        product="Type4Tag",
        uid_hash_key=SecretBytes(KEY),
    )
    (reading,) = decode_uid_tap(f, CARD)
    assert reading.device == card_key("a1b2c3d4", KEY)
    assert reading.device.startswith("card:") and len(reading.device) == 5 + 24
    assert "a1b2c3d4" not in repr(reading)
    other_key = decode_uid_tap(replace(f, meta={**f.meta, "uid_hash_key": b"\x01" * 32}), CARD)
    assert other_key[0].device != reading.device


def test_student_card_without_a_hash_key_is_a_decode_error() -> None:
    with pytest.raises(DecodeError, match="no uid hash key configured"):
        decode_uid_tap(frame(b"", uid="a1b2c3d4"), CARD)
    with pytest.raises(DecodeError, match="cannot hash"):
        decode_uid_tap(frame(b"", uid="a1b2c3d4", uid_hash_key=b"short"), CARD)


def test_uid_tap_without_uid_is_a_decode_error_and_random_ids_are_skipped() -> None:
    with pytest.raises(DecodeError, match="without a UID"):
        decode_uid_tap(frame(b"", uid=None, uid_hash_key=KEY), CARD)
    assert decode_uid_tap(frame(b"", uid="08a1b2c3", uid_hash_key=KEY), CARD) == []


def test_secret_bytes_never_print() -> None:
    secret = SecretBytes(KEY)
    assert KEY.hex() not in repr({"k": secret}) and KEY.hex() not in str(secret)
    assert bytes(secret) == KEY


def test_ndef_uris_reads_every_uri_record() -> None:
    assert ndef_uris(message("https://a.example/1", "tel:+861234")) == [
        "https://a.example/1",
        "tel:+861234",
    ]
    assert ndef_uris(b"") == []


# -- profile validation ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("profile", "change", "field"),
    [
        (SUN, {"match": {"url_hots": "x"}}, "match.url_hots"),
        (SUN, {"match": {"technology": "Type2Tag"}}, "match.url_host"),
        (SUN, {"match": {"url_host": "x", "technology": ["Type9Tag"]}}, "match.technology"),
        (SUN, {"options": {"picc_param": "a&b"}}, "options.picc_param"),
        (SUN, {"transport": "ble"}, "transport"),
        (NTAG21X, {"options": {"hash_uid": "yes"}}, "options.hash_uid"),
        (NTAG21X, {"match": {"uid_length": [5]}}, "match.uid_length"),
        (NTAG21X, {"match": {"product_prefix": []}}, "match.product_prefix"),
    ],
)
def test_validate_profile_names_the_bad_field(
    profile: Profile, change: dict[str, Any], field: str
) -> None:
    with pytest.raises(ProfileError, match=rf"^{field}: "):
        validate_profile(replace(profile, **change))


def test_shipped_nfc_profiles_validate() -> None:
    for profile in (SUN, NTAG21X, CARD):
        validate_profile(profile)


# -- fuzz: arbitrary bytes and meta never raise anything but DecodeError ---------------------

metas = st.fixed_dictionaries(
    {},
    optional={
        "uid": st.one_of(st.text(max_size=22), st.binary(max_size=10).map(bytes.hex)),
        "technology": st.sampled_from(["Type1Tag", "Type2Tag", "Type3Tag", "Type4Tag", ""]),
        "product": st.text(max_size=20),
        "uid_hash_key": st.one_of(st.binary(max_size=40), st.text(max_size=40)),
    },
)
payloads = st.one_of(
    st.binary(max_size=200),
    st.text(max_size=120).map(lambda t: message(HOST + "?" + t)),
    st.builds(
        lambda a, b: message(f"{HOST}?picc_data={a}&cmac={b}&uid={a[:14]}&ctr={b[:6]}"),
        st.text("0123456789ABCDEFg", max_size=34),
        st.text("0123456789abcdef", max_size=18),
    ),
)


@settings(max_examples=300, deadline=None, print_blob=True)
@given(payload=payloads, meta=metas)
def test_fuzz_decoders_only_raise_decode_error(payload: bytes, meta: dict[str, Any]) -> None:
    f = RawFrame("fuzz", TS, payload, meta)
    for decode, profile in (
        (decode_sun_tap, SUN),
        (decode_uid_tap, NTAG21X),
        (decode_uid_tap, CARD),
    ):
        try:
            readings = decode(f, profile)
        except DecodeError:
            continue
        for reading in readings:
            assert reading.ts == TS and reading.kind == "tap" and reading.profile == profile.ref
            assert reading.device.startswith(("nfc:", "nfc-sun:", "card:"))


# -- shouhu decode nfc ----------------------------------------------------------------------


def run_cli(*args: str) -> tuple[int, dict[str, Any] | None, str]:
    import json

    from click.testing import CliRunner

    from shouhu.decode_cli import decode

    result = CliRunner().invoke(decode, ["nfc", *args])
    out = result.stdout.strip()
    return result.exit_code, (json.loads(out) if out.startswith("{") else None), result.output


def test_cli_valid_url() -> None:
    code, out, _ = run_cli(f"{HOST}?{AN12196}", "--key", "00" * 16, "--last-counter", "60")
    assert code == 0
    assert out is not None and out["verdict"] == "valid"
    assert (out["uid"], out["counter"]) == ("04de5f1eacc040", 61)


def test_cli_replay_and_bad_mac_exit_1() -> None:
    code, out, _ = run_cli(f"{HOST}?{AN12196}", "--key", "00" * 16, "--last-counter", "61")
    assert code == 1 and out is not None and out["verdict"] == "replay"
    code, out, _ = run_cli(f"{HOST}?{AN12196}", "--key", "00" * 16, "--file-key", "11" * 16)
    assert code == 1 and out is not None and out["verdict"] == "bad_mac"


@pytest.mark.parametrize(
    "args",
    [
        [f"{HOST}?picc_data=EF96&cmac=94EED9EE65337086", "--key", "00" * 16],
        ["https://example.com/?" + AN12196, "--key", "00" * 16],
        [f"{HOST}?{AN12196}", "--key", "00" * 15],
        [f"{HOST}?{AN12196}", "--key", "00" * 16, "--profile", "patrol-ntag21x"],
        [f"{HOST}?{AN12196}", "--key", "00" * 16, "--profile", "no-such-profile"],
    ],
)
def test_cli_bad_input_exits_2(args: list[str]) -> None:
    code, out, _ = run_cli(*args)
    assert code == 2 and out is None
