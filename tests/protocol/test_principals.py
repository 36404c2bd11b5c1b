"""Who is a mail user and who is a computer: the one rule the SPNEGO acceptor, the pipeline and MS-XCEP use."""

from __future__ import annotations

import pytest

from autoenroll.protocol.principals import computer_principal, user_principal


@pytest.mark.parametrize(
    ("principal", "parts"),
    [
        ("user1@TEST.COM", ("user1", "TEST.COM")),
        ("first.last@ad.example.org", ("first.last", "ad.example.org")),
        ("user\\@mail.example@TEST.COM", ("user\\@mail.example", "TEST.COM")),  # enterprise name: realm after last @
    ],
)
def test_a_user_principal_is_its_name_and_realm(principal, parts):
    assert user_principal(principal) == parts


@pytest.mark.parametrize(
    ("principal", "why"),
    [
        ("user1", "no @REALM"),
        ("", "no @REALM"),
        ("@TEST.COM", "empty name"),
        ("user1@", "empty realm"),
        ("HTTP/ccm.test.com@TEST.COM", "service principal"),
        ("host/ws1.test.com@TEST.COM", "service principal"),
        ("WS1$@TEST.COM", "computer account"),
        (None, "must be text"),
    ],
)
def test_services_computers_and_malformed_names_are_not_users(principal, why):
    with pytest.raises(ValueError, match=why):
        user_principal(principal)


def test_a_computer_account_is_a_computer_and_nothing_else_is():
    assert computer_principal("WS1$@TEST.COM") == ("WS1$", "TEST.COM")
    for principal in ("user1@TEST.COM", "HTTP/ws1$@TEST.COM", "$@TEST.COM", "WS1$", "WS1$@"):
        with pytest.raises(ValueError):
            computer_principal(principal)
