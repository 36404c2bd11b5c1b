"""`parse_serial`: every way a serial is written names one canonical form; anything else says what is wrong."""

from __future__ import annotations

import random

import pytest

from autoenroll.pki import parse_serial
from autoenroll.pki.serials import MAX_SERIAL_DIGITS


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("ab", "ab"),
        ("AB", "ab"),
        ("0xAB", "ab"),
        ("0X00ab", "ab"),
        ("00:AB", "ab"),
        ("0a:bc:de", "abcde"),
        ("0a bc de", "abcde"),
        ("  0x 0A:BC  ", "abc"),
        ("0", "0"),
        ("00:00", "0"),
        ("0x0", "0"),
        ("f" * MAX_SERIAL_DIGITS, "f" * MAX_SERIAL_DIGITS),
        ("0" * (MAX_SERIAL_DIGITS - 2) + "1f", "1f"),
    ],
)
def test_every_written_form_of_a_serial_has_one_canonical_form(text, canonical):
    assert parse_serial(text) == canonical


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "no hexadecimal digits"),
        ("   ", "no hexadecimal digits"),
        ("0x", "no hexadecimal digits"),
        (":", "no hexadecimal digits"),
        ("xyz", "'x' is not a hex digit"),
        ("12-34", "'-' is not a hex digit"),
        ("0x0x12", "'x' is not a hex digit"),
        ("ab\u00e9", "is not a hex digit"),
        ("\u0661\u0662", "is not a hex digit"),  # Arabic-Indic digits: str.isdigit() would say yes
        ("1" * (MAX_SERIAL_DIGITS + 1), f"more than {MAX_SERIAL_DIGITS} hex digits"),
        (None, "must be text"),
        (171, "must be text"),
    ],
)
def test_anything_else_is_a_value_error_that_says_why(text, why):
    with pytest.raises(ValueError, match=why):
        parse_serial(text)


def test_a_serial_written_any_way_comes_back_as_the_number_in_lower_case_hex():
    rng = random.Random(12)  # noqa: S311 - reproducible test data
    for _ in range(500):
        number = rng.choice([0, 1, rng.getrandbits(rng.randint(1, 159))])
        canonical = format(number, "x")
        assert int(canonical, 16) == number
        octets = format(number, "0" + str(2 * ((len(canonical) + 1) // 2)) + "X")
        written = rng.choice(
            [
                canonical,
                canonical.upper(),
                "0x" + "0" * rng.randint(0, 4) + canonical,
                ":".join(octets[i : i + 2] for i in range(0, len(octets), 2)),
                " ".join(octets[i : i + 2] for i in range(0, len(octets), 2)).lower(),
            ]
        )
        assert parse_serial(written) == canonical, written
        assert parse_serial(parse_serial(written)) == canonical  # idempotent: the stored form parses to itself


def test_a_long_bad_input_is_not_echoed_whole():
    with pytest.raises(ValueError) as caught:
        parse_serial("z" * 10_000)
    assert len(str(caught.value)) < 200
