"""Rows written and read without the ORM's statement compilation (utils.rows): what the ORM itself
would write and read back, on SQLite and PostgreSQL alike."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils.functional import lazy

from autoenroll.server.certificates.models import Certificate
from autoenroll.server.directory.models import Person
from autoenroll.server.enrollment.models import EnrollmentEvent
from autoenroll.server.kerberos.models import SeenAuthenticator
from autoenroll.server.utils import rows

pytestmark = pytest.mark.django_db

SYNCED = datetime(2026, 11, 30, 8, 15, 30, 123456, tzinfo=UTC)


def _person(acme, principal: str = "user1@TEST.COM", **fields) -> Person:
    values = {"sam_account_name": "user1", "mail": "user1@test.com", "enabled": False, "synced_at": SYNCED}
    return Person(customer=acme, principal=principal, **{**values, **fields})


def test_an_inserted_row_is_what_the_orm_reads_back(acme):
    person = rows.insert(_person(acme))
    assert person.pk is not None and not person._state.adding
    stored = Person.objects.get(pk=person.pk)
    assert (stored.principal, stored.enabled, stored.synced_at, stored.customer_id) == (
        "user1@TEST.COM",
        False,
        SYNCED,
        acme.pk,
    )


def test_a_conflicting_row_is_left_out_when_asked(acme):
    first = rows.insert(_person(acme))
    again = rows.insert(_person(acme, mail="other@test.com"), ignore_conflicts=True)
    assert again.pk is None and again._state.adding  # not in the database
    assert list(Person.objects.values_list("pk", "mail")) == [(first.pk, "user1@test.com")]


def test_a_row_with_its_own_primary_key_says_whether_it_was_written(db):
    """The replay cache's rows carry their key (a digest): the second of the same key is left out."""
    import datetime as dt

    def seen():
        return SeenAuthenticator(digest="ab" * 32, expires=SYNCED + dt.timedelta(minutes=5))

    assert not rows.insert(seen(), ignore_conflicts=True)._state.adding
    assert rows.insert(seen(), ignore_conflicts=True)._state.adding
    assert SeenAuthenticator.objects.count() == 1


def test_a_conflicting_row_raises_otherwise(acme):
    rows.insert(_person(acme))
    with pytest.raises(IntegrityError), transaction.atomic():
        rows.insert(_person(acme))


def test_selected_rows_are_converted_as_the_orm_converts_them(acme):
    person = rows.insert(_person(acme))
    sql = f"SELECT p.*, 41 + 1 AS answer FROM {Person._meta.db_table} p WHERE p.id = %s"  # noqa: S608
    [read] = rows.select(Person, sql, [person.pk])
    assert read.synced_at == SYNCED and read.synced_at.tzinfo is not None  # SQLite stores text
    assert read.enabled is False  # SQLite stores 0
    assert read.answer == 42 and read.pk == person.pk and not read._state.adding
    assert read.customer == acme  # a real instance: its relations load as usual
    assert rows.select(Person, sql, [person.pk + 1000]) == []


def test_many_rows_go_in_one_statement_per_batch(acme):
    people = [_person(acme, principal=f"user{i}@TEST.COM", mail=f"user{i}@test.com") for i in range(5)]
    with CaptureQueriesContext(connection) as queries:
        rows.insert_all(people, batch_size=2)
    assert len(queries) == 3
    stored = Person.objects.order_by("principal").values_list("principal", "mail", "synced_at")
    assert list(stored) == [(f"user{i}@TEST.COM", f"user{i}@test.com", SYNCED) for i in range(5)]


def _as_django_writes(obj) -> list:
    fields = rows._written(obj)
    return [f.get_db_prep_save(f.pre_save(obj, True), connection=connection) for f in fields]


def _comparable(values: list, stamped: list) -> list:
    """psycopg's Binary wrappers compare by identity: by what they wrap."""
    return [(type(v), None if t else getattr(v, "obj", v)) for v, t in zip(values, stamped, strict=True)]


class _Text(str):
    pass


def test_values_written_are_what_django_would_write(acme, ca):
    """`_values` passes some values on as they are: never one that Django's chain would have changed."""
    issuing = ca[1]
    lazy_text = lazy(lambda: "lazy text", str)()
    person = rows.insert(_person(acme))
    samples = [
        _person(acme, mail=lazy_text, enabled=True, synced_at=None),
        _person(acme, principal=_Text("user2@TEST.COM")),  # a str subclass
        Certificate(
            ca=issuing,
            serial="0a",
            person=person,
            subject="CN=x",
            issuer="CN=y",
            not_before=SYNCED,
            not_after=SYNCED,
            fingerprint_sha256="f" * 64,
            pem="-",
            status=Certificate.Status.ISSUED,
            crl_partition=3,
            crl_entry=b"\x30\x00",
            installed_at=None,
        ),  # fmt: skip
        EnrollmentEvent(
            created=SYNCED,
            step="enroll",
            outcome="error",
            error_code=True,
            message="m",
            principal="p",
            customer_id=acme.pk,
            remote_addr="::1",
            mac="",
        ),  # fmt: skip
        EnrollmentEvent(step=EnrollmentEvent.Step.STATUS, outcome="success", customer=None),
    ]
    for obj in samples:
        expected = _as_django_writes(obj)
        written = rows._values(obj, rows._written(obj), connection)
        stamped = [getattr(f, "auto_now_add", False) for f in rows._written(obj)]  # now, at each call
        assert _comparable(written, stamped) == _comparable(expected, stamped), type(obj).__name__


def test_a_new_row_is_what_the_keyword_constructor_makes(acme):
    values = {"step": "enroll", "outcome": "success", "principal": "p", "customer_id": acme.pk}
    made, expected = rows.new(EnrollmentEvent, **values), EnrollmentEvent(**values)
    fields = [f.attname for f in EnrollmentEvent._meta.concrete_fields if f.attname != "created"]
    assert [getattr(made, name) for name in fields] == [getattr(expected, name) for name in fields]
    assert made.created is not None and made._state.adding and made.customer == acme
    with pytest.raises(TypeError, match="no field customer"):
        rows.new(EnrollmentEvent, customer=acme)
