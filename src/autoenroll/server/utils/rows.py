"""Model rows in and out of written-out SQL, for the enrollment hot path.

On a logon the ORM's work around each statement (building the query, compiling it, `RawQuerySet`
resolving its columns anew) cost more CPU than the database spent running it. These functions keep
what matters of the ORM, each field's own conversion to and from the database (`get_db_prep_save`,
the backend's converters), and do the rest once per statement shape. No signals are sent: use them only
for models nothing listens to (certificates, persons, enrollment events, the replay cache), never
for configuration.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import AutoField, BigAutoField, CharField, EmailField, Field, ForeignKey, Model, TextField


def select_list(model: type[Model], alias: str) -> str:
    """The model's columns for a SELECT, named one by one: a statement PostgreSQL has prepared keeps the
    shape of its answer when a migration adds a column to the table, where `alias.*` would fail ("cached
    plan must not change result type") on every connection that had prepared it."""
    return ", ".join(f'{alias}."{field.column}"' for field in model._meta.concrete_fields)


def select(model: type[Model], sql: str, params: Sequence = ()) -> list:
    """Instances of `model` from `sql`, which selects the model's columns (`select_list`) and may add others:
    those become attributes of each instance, as `Model.objects.raw` makes them."""
    connection = _connection()
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        names = tuple(column[0] for column in cursor.description)
        rows = cursor.fetchall()
    build = _reader(model, names, connection.vendor)
    return [build(row, connection) for row in rows]


def _connection():
    """The database connection itself: `django.db.connection` looks it up again at every attribute."""
    return connections[DEFAULT_DB_ALIAS]


@lru_cache(maxsize=64)
def _reader(model: type[Model], names: tuple[str, ...], vendor: str):
    connection = _connection()
    fields = model._meta.concrete_fields
    index = {name: i for i, name in enumerate(names)}
    positions = [index[f.column] for f in fields]
    attnames = [f.attname for f in fields]
    converting = []
    for n, field in enumerate(fields):
        col = field.get_col(model._meta.db_table)
        found = connection.ops.get_db_converters(col) + col.get_db_converters(connection)
        if found:
            converting.append((n, col, found))
    columns = {f.column for f in fields}
    extra = [(name, i) for name, i in index.items() if name not in columns]

    def build(row: tuple, connection) -> Model:
        values = [row[i] for i in positions]
        for n, col, converters in converting:
            value = values[n]
            for convert in converters:
                value = convert(value, col, connection)
            values[n] = value
        obj = model.from_db(connection.alias, attnames, values)
        for name, i in extra:
            setattr(obj, name, row[i])
        return obj

    return build


def new(model: type[Model], **values) -> Model:
    """`model(**values)`, not saved, made as Django makes the rows it reads: by position. The keyword
    constructor looks each field up by name and relation, which cost more than the INSERT of an enrollment
    event. `values` by attname (`person_id`, not `person`); the fields not named get their defaults."""
    row = model(*[values.pop(attname) if attname in values else default() for attname, default in _defaults(model)])
    if values:
        raise TypeError(f"{model.__name__} has no field {', '.join(values)}")
    return row


@lru_cache(maxsize=64)
def _defaults(model: type[Model]) -> tuple:
    return tuple((f.attname, f.get_default) for f in model._meta.concrete_fields)


def insert(obj: Model, *, ignore_conflicts: bool = False) -> Model:
    """INSERT `obj` as `save(force_insert=True)` would, its primary key set from the database.
    With `ignore_conflicts`, a row that would break a unique constraint is not written: ON CONFLICT DO
    NOTHING, on SQLite and PostgreSQL alike; `obj._state.adding` then stays True (not in the database),
    and a primary key the database was to choose stays unset."""
    connection = _connection()
    meta = obj._meta
    fields = _written(obj)
    returning = connection.features.can_return_columns_from_insert and meta.pk not in fields
    sql = _insert_sql(
        meta.db_table, tuple(f.column for f in fields), meta.pk.column if returning else "", ignore_conflicts
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, _values(obj, fields, connection))
        if returning:
            row = cursor.fetchone()  # none when a conflict was ignored
            written = row is not None
            if written:
                setattr(obj, meta.pk.attname, row[0])
        else:
            written = cursor.rowcount != 0
            if written and meta.pk not in fields:
                setattr(obj, meta.pk.attname, cursor.lastrowid)
    if written:
        obj._state.adding, obj._state.db = False, connection.alias
    return obj


def insert_all(objs: Sequence[Model], *, batch_size: int = 500) -> None:
    """INSERT rows of one model, one statement per batch; their primary keys are not read back."""
    connection = _connection()
    for start in range(0, len(objs), batch_size):
        batch = objs[start : start + batch_size]
        fields = _written(batch[0])
        sql = _insert_sql(batch[0]._meta.db_table, tuple(f.column for f in fields), "", False, len(batch))
        with connection.cursor() as cursor:
            cursor.execute(sql, [value for obj in batch for value in _values(obj, fields, connection)])
        for obj in batch:
            obj._state.adding, obj._state.db = False, connection.alias


def _written(obj: Model) -> tuple:
    """The columns an INSERT of `obj` writes: all but a primary key the database is to choose."""
    return _columns(type(obj), obj.pk is not None)


@lru_cache(maxsize=64)
def _columns(model: type[Model], with_pk: bool) -> tuple:
    return tuple(f for f in model._meta.local_concrete_fields if with_pk or not f.primary_key)


def _values(obj: Model, fields: tuple, connection) -> list:
    """Each field's value as `save()` writes it. Values Django would pass on unchanged (text of a text field,
    an id of a foreign key, None where nothing fills it in) skip its chain of calls, a third of an INSERT."""
    values = []
    for f, attname, plain in _plain(fields):
        value = getattr(obj, attname)
        if type(value) not in plain:
            value = f.get_db_prep_save(f.pre_save(obj, True), connection=connection)
        values.append(value)
    return values


@lru_cache(maxsize=64)
def _plain(fields: tuple) -> tuple:
    found = []
    for f in fields:
        if type(f) in _TEXT:
            plain = (str, type(None))
        elif type(f) is ForeignKey and type(f.target_field) in _AUTO:
            plain = (int, type(None))
        elif type(f).__module__.startswith("django.") and type(f).pre_save is Field.pre_save:
            plain = (type(None),)  # no value filled in on save (as auto_now does): None stays NULL
        else:
            plain = ()
        found.append((f, f.attname, plain))
    return tuple(found)


_TEXT = (CharField, EmailField, TextField)
_AUTO = (AutoField, BigAutoField)


@lru_cache(maxsize=64)
def _insert_sql(table: str, columns: tuple[str, ...], returning: str, ignore_conflicts: bool, rows: int = 1) -> str:
    qn = _connection().ops.quote_name
    values = ", ".join([f"({', '.join(['%s'] * len(columns))})"] * rows)
    sql = f"INSERT INTO {qn(table)} ({', '.join(map(qn, columns))}) VALUES {values}"  # noqa: S608 - names from the model
    if ignore_conflicts:
        sql += " ON CONFLICT DO NOTHING"
    return sql + (f" RETURNING {qn(returning)}" if returning else "")
