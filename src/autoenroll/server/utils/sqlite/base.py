"""Django's SQLite backend, with each statement's placeholders converted once instead of at every execution.

Django rewrites the `%s` of a statement into SQLite's `?` with a regular expression each time it runs; on a
logon, scanning the same dozen statements again cost about as much as SQLite spent executing them.
`settings.DATABASES` names this module for a `sqlite:` database URL; everything else is Django's own."""

from __future__ import annotations

from functools import lru_cache

from django.db.backends.sqlite3 import base

#: Longer statements (bulk inserts, long IN lists) are rarely repeated: converted as Django does, not kept.
_LONGEST_KEPT = 4096


class SQLiteCursorWrapper(base.SQLiteCursorWrapper):
    def convert_query(self, query, *, param_names=None):
        if param_names is None and len(query) <= _LONGEST_KEPT:
            return _qmark(query)
        return super().convert_query(query, param_names=param_names)


@lru_cache(maxsize=1024)
def _qmark(query: str) -> str:
    return base.FORMAT_QMARK_REGEX.sub("?", query).replace("%%", "%")


class DatabaseWrapper(base.DatabaseWrapper):
    def create_cursor(self, name=None):
        return self.connection.cursor(factory=SQLiteCursorWrapper)
