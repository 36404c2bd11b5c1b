"""A base for management commands with sub-commands (`customers add`, `ca init`, ...), and the loop of the
watchers that `serve` runs (`watch`)."""

from __future__ import annotations

import getpass
import logging
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import IntegrityError, close_old_connections

from autoenroll.server.utils import database

log = logging.getLogger("autoenroll.watch")


class SubcommandCommand(BaseCommand):
    """Subclasses define `add_<action>_arguments(parser)` and `handle_<action>(**options)`."""

    actions: dict[str, str] = {}

    def add_arguments(self, parser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        for action, help_text in self.actions.items():
            p = sub.add_parser(action, help=help_text)
            getattr(self, f"add_{action.replace('-', '_')}_arguments", lambda p: None)(p)

    def handle(self, *args, action: str, **options):
        try:
            return getattr(self, f"handle_{action.replace('-', '_')}")(**options)
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from None
        except IntegrityError as exc:
            raise CommandError(f"refused by the database: {exc}") from None

    def table(self, rows: list[tuple], headers: tuple[str, ...]) -> None:
        """Print rows as aligned columns (plain text: these lists are read by humans and grep)."""
        rows = [tuple("" if v is None else str(v) for v in r) for r in rows]
        widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
        self.stdout.write("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
        for r in rows:
            self.stdout.write("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())


def get_customer(uri: str):
    """The customer a command names by its uri; a clear CommandError when there is none."""
    from autoenroll.server.tenants.models import Customer

    try:
        return Customer.objects.get(uri=uri)
    except Customer.DoesNotExist:
        raise CommandError(f"no customer with uri {uri!r}") from None


def read_text(file: str) -> str:
    """A text file a command was given ('-': standard input), as UTF-8; a one-line error for one it
    cannot read (missing, a directory, binary: a DER certificate for a PEM one, say) or that holds a NUL."""
    try:
        text = sys.stdin.read() if file == "-" else Path(file).read_text(encoding="utf-8")
    except OSError as exc:
        raise CommandError(f"cannot read {file}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise CommandError(f"{file} is not UTF-8 text") from None
    if "\x00" in text:
        raise CommandError(f"{file} holds a NUL character: it is not a text file")
    return text


def read_password(password_file: str | None, prompt: str = "Login Password: ") -> str:
    """A password (the AD login's, an administrator's), from a file, standard input or a prompt: never
    from the command line, where every user of the machine could read it in the process list."""
    if password_file == "-":
        value = sys.stdin.readline().rstrip("\r\n")
        if "\x00" in value:
            raise CommandError("the password on standard input holds a NUL character")
    elif password_file:
        value = read_text(password_file).rstrip("\r\n")
    elif sys.stdin.isatty():
        try:
            value = getpass.getpass(prompt)
        except (EOFError, KeyboardInterrupt):  # Ctrl-D, Ctrl-C at the prompt
            raise CommandError("no password given") from None
    else:
        raise CommandError("no terminal to ask the password on: give --password-file FILE (or - for standard input)")
    if not value:
        raise CommandError("the login password is empty")
    return value


def watch(seconds: int, *rounds: tuple[str, Callable[[], Iterable[str]]]) -> None:
    """Every `seconds`, each round in turn, for ever (what `serve`'s watchers run). What a round did goes to
    the server's log with the time, as every other line there; a round that fails is tried again at the
    next turn: logged once a minute while the database is away, else with its traceback."""
    log.info("every %d s: %s", seconds, ", ".join(what for what, _ in rounds))
    while True:
        close_old_connections()
        for what, round_ in rounds:
            try:
                for line in round_():
                    log.info(line)
            except Exception as exc:  # noqa: BLE001 - the next turn may succeed
                if not database.away(exc, what, what):
                    log.exception("%s failed", what)
        time.sleep(seconds)
