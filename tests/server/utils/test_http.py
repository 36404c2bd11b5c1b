"""What a Content-Length header declares."""

from hypothesis import given
from hypothesis import strategies as st

from autoenroll.server.utils.http import content_length


def test_ascii_digits_only():
    assert content_length("0") == 0 and content_length("1048576") == 1048576
    for value in ("", "-1", "+5", " 5", "1e3", "²", "１２", "0x10"):
        assert content_length(value) is None, value


@given(st.text(max_size=12))
def test_a_length_is_what_its_ascii_digits_say(value):
    length = content_length(value)
    assert length is None or (value.isascii() and str(length) == value.lstrip("0").rjust(1, "0"))
