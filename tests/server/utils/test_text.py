"""What the server accepts as text from outside: every string, compared with the definition."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from autoenroll.server.utils.text import storable


def _by_definition(value: str) -> bool:
    return all(ch != "\x00" and not ("\ud800" <= ch <= "\udfff") for ch in value)


@given(st.text(st.characters(codec=None, exclude_categories=())))
def test_storable_is_no_nul_and_no_lone_surrogate(value):
    assert storable(value) == _by_definition(value)


@given(st.text(), st.sampled_from(["\x00", "\ud800", "\udbff", "\udc00", "\udfff"]), st.text())
def test_any_nul_or_surrogate_anywhere_is_refused(before, bad, after):
    assert not storable(before + bad + after)
