"""NTAG 424 DNA SUN verification against the published NXP AN12196 examples.

Vectors as printed in AN12196 (and used by nfc-developer/sdm-backend's tests): all-zero keys
unless stated. Note: the encrypted PICCData of the AN12196 example ends ...1510671E88.
"""

from __future__ import annotations

import pytest

from collector.sun import SunVerdict, aes_cmac, sdm_mac, verify_sun
from shouhu.exceptions import ConfigError, DecodeError, ShouhuError

ZERO = "00" * 16
AN12196_PICC = "EF963FF7828658A599F3041510671E88"
AN12196_MAC = "94EED9EE65337086"


def test_an12196_encrypted_picc_data() -> None:
    verdict = verify_sun(AN12196_PICC, AN12196_MAC, ZERO, ZERO, last_counter=-1)
    assert verdict == SunVerdict(
        uid="04de5f1eacc040", counter=61, valid_mac=True, replay=False, ok=True, reason="valid"
    )


def test_an12196_encrypted_picc_data_with_encrypted_file_data() -> None:
    verdict = verify_sun(
        "FD91EC264309878BE6345CBE53BADF40",
        "ECC1E7F6C6C73BF6",
        ZERO,
        bytes(16),
        last_counter=7,
        enc_hex="CEE9A53E3E463EF1F459635736738962",
    )
    assert (verdict.uid, verdict.counter, verdict.reason) == ("04958caa5c5e80", 8, "valid")


def test_sdm_backend_custom_keys_mac_directly_after_file_data() -> None:
    verdict = verify_sun(
        "8ACADDEF0A9B62CDAE39A16B83FC14DE",
        "238B2543A8DEBAD8",
        "42aff114f2cb3b6141be6dc95dfc5416",
        "b62a9baf092439bd43c62aee96b970c5",
        last_counter=0,
        enc_hex="B8436E11F627BB7F543FCC0C1E0D1A89",
        mac_param="",
    )
    assert (verdict.uid, verdict.counter, verdict.ok) == ("041d3c8a2d6b80", 291, True)


def test_an12196_plain_mirroring() -> None:
    verdict = verify_sun("041E3C8A2D6B80" + "000006", "4B00064004B0B3D3", ZERO, ZERO, 5)
    assert (verdict.uid, verdict.counter, verdict.ok) == ("041e3c8a2d6b80", 6, True)


@pytest.mark.parametrize(
    ("picc", "mac"),
    [
        (AN12196_PICC, "94EED9EE65337087"),  # last MAC bit flipped
        (AN12196_PICC, "0" * 16),
        ("041E3C8A2D6B80000007", "4B00064004B0B3D3"),  # plain counter edited
        ("041E3C8A2D6B81000006", "4B00064004B0B3D3"),  # plain UID edited
    ],
)
def test_wrong_mac_is_bad_mac(picc: str, mac: str) -> None:
    verdict = verify_sun(picc, mac, ZERO, ZERO, last_counter=0)
    assert not verdict.valid_mac and not verdict.ok
    assert verdict.reason == "bad_mac"


def test_wrong_file_key_is_bad_mac_but_uid_still_read() -> None:
    verdict = verify_sun(AN12196_PICC, AN12196_MAC, ZERO, "11" * 16, last_counter=0)
    assert (verdict.uid, verdict.counter, verdict.reason) == ("04de5f1eacc040", 61, "bad_mac")


def test_wrong_meta_key_or_edited_picc_data_cannot_be_read() -> None:
    wrong_key = verify_sun(AN12196_PICC, AN12196_MAC, "11" * 16, ZERO, last_counter=0)
    edited = verify_sun("EF963FF7828658A599F3041510E0A8C0", AN12196_MAC, ZERO, ZERO, 0)
    for verdict in (wrong_key, edited):
        assert verdict == SunVerdict("", -1, False, False, False, "bad_picc_data")


@pytest.mark.parametrize("last", [61, 62, 10_000])
def test_counter_not_above_the_last_accepted_is_replay(last: int) -> None:
    verdict = verify_sun(AN12196_PICC, AN12196_MAC, ZERO, ZERO, last_counter=last)
    assert verdict.valid_mac and verdict.replay and not verdict.ok
    assert verdict.reason == "replay"
    assert verify_sun(AN12196_PICC, AN12196_MAC, ZERO, ZERO, last_counter=60).ok


@pytest.mark.parametrize(
    ("picc", "mac"),
    [
        (AN12196_PICC[:-2], AN12196_MAC),  # truncated PICCData
        (AN12196_PICC, AN12196_MAC[:-1]),  # truncated MAC
        ("", AN12196_MAC),
        (AN12196_PICC.replace("E", "G"), AN12196_MAC),
        (AN12196_PICC + "00" * 8, AN12196_MAC),  # 24 bytes: LRP mode, not supported
    ],
)
def test_malformed_input_raises_decode_error(picc: str, mac: str) -> None:
    with pytest.raises(DecodeError):
        verify_sun(picc, mac, ZERO, ZERO, 0)


def test_malformed_keys_raise_config_error() -> None:
    with pytest.raises(ConfigError):
        verify_sun(AN12196_PICC, AN12196_MAC, ZERO[:-2], ZERO, 0)
    with pytest.raises(ConfigError):
        verify_sun(AN12196_PICC, AN12196_MAC, ZERO, b"\x00" * 15, 0)
    with pytest.raises(ShouhuError):
        verify_sun(AN12196_PICC, AN12196_MAC, ZERO, ZERO, 0, enc_hex="ABC")


def test_aes_cmac_rfc4493_vectors() -> None:
    key = bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3c")
    assert aes_cmac(key, b"").hex() == "bb1d6929e95937287fa37d129b756746"
    msg = bytes.fromhex("6bc1bee22e409f96e93d7e117393172a")
    assert aes_cmac(key, msg).hex() == "070a16b46b4d4144f79bdd9dd04a287c"


def test_sdm_mac_round_trip_with_fresh_keys() -> None:
    file_key = bytes.fromhex("5ed1b3c0a8f24d71e6a09c3b7f12d4e8")
    uid, counter = bytes.fromhex("04a1b2c3d4e5f6"), 1234
    mac = sdm_mac(file_key, uid, counter.to_bytes(3, "little"))
    picc_plain = uid.hex() + counter.to_bytes(3, "big").hex()
    verdict = verify_sun(picc_plain, mac.hex(), ZERO, file_key, last_counter=1233)
    assert verdict.ok and verdict.counter == counter
