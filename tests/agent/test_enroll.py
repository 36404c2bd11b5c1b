"""The agent's decisions that need no server: when a certificate is due for renewal."""

from __future__ import annotations

import datetime
import time

import pytest

from autoenroll.agent.enroll import is_due
from autoenroll.agent.stores.base import Installed, days_left, local_date


@pytest.fixture
def new_york(monkeypatch):
    """The user's clock in a zone whose date differs from UTC's in the evening."""
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    yield datetime.timezone(datetime.timedelta(hours=-4))  # June: daylight saving time
    monkeypatch.undo()
    time.tzset()


@pytest.mark.parametrize(
    ("now", "due"),
    [
        (datetime.datetime(2008, 6, 9, 23, 59), False),  # 21 days
        (datetime.datetime(2008, 6, 10, 0, 1), True),  # 6/10: 20 days, though 20 days and 15 hours remain
        (datetime.datetime(2008, 6, 10, 8, 0), True),
        (datetime.datetime(2008, 6, 30, 14, 0), True),
    ],
)
def test_the_guides_example_renews_on_6_10_at_any_hour(new_york, now, due):
    """Guide 3.1: days = 20, the certificate expires on 6/30 (at 15:00 of the user's clock)."""
    expiry = datetime.datetime(2008, 6, 30, 15, 0, tzinfo=new_york).astimezone(datetime.UTC)
    summary = {"serial": "1", "issuer": "", "subject": "", "mails": [], "not_before": "2007-06-30T19:00:00+00:00"}
    cert = Installed(None, "test", "ref", summary={**summary, "not_after": expiry.isoformat()})
    assert is_due(cert, 20, now.replace(tzinfo=new_york).astimezone(datetime.UTC)) is due


def test_no_certificate_is_due():
    assert is_due(None, 20, datetime.datetime.now(datetime.UTC))


def test_the_log_shows_the_expiry_date_of_the_users_clock(new_york):
    """The log's "valid until" date and its day count are on the same clock: 22:00 in New York on 6/30 is
    already 7/1 in UTC, which would have read as one day more than the count says."""
    expiry = datetime.datetime(2008, 6, 30, 22, 0, tzinfo=new_york).astimezone(datetime.UTC)
    assert expiry.date() == datetime.date(2008, 7, 1)
    assert local_date(expiry) == datetime.date(2008, 6, 30)
    assert days_left(expiry, datetime.datetime(2008, 6, 10, 23, 0, tzinfo=new_york)) == 20
