"""`autoenroll-server`: the server's command line, a thin front for Django management commands.

Settings are validated before anything else runs, so a typo in a setting ends with one line that
names it, not a stack trace. `pip install autoenroll` installs the agent only: there this command says
how to add the server instead of dying on a missing module.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

EXIT_NOT_INSTALLED = 2


def _not_installed(module: str) -> None:
    sys.stderr.write(
        f"autoenroll-server: the server is not installed here (no module {module!r}); "
        "install it with: pip install 'autoenroll[server]'\n"
    )
    raise SystemExit(EXIT_NOT_INSTALLED)


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv if argv is None else argv)
    if argv[1:2] == ["--version"]:  # ours, not Django's
        from autoenroll import version

        print(f"autoenroll-server {version()}")
        return
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "autoenroll.server.settings")
    command = argv[1] if len(argv) > 1 else ""
    try:
        import django
        from django.core.exceptions import ImproperlyConfigured

        from autoenroll.server.config import ConfigError, get_config
    except ModuleNotFoundError as exc:
        _not_installed(exc.name or "django")
    try:  # before anything writes into the data directory (Django's secret key, serve's metrics folder)
        config = get_config()
    except ConfigError as exc:
        _stop(f"invalid setting: {exc}")
    _stop(_wrong_user(command, config.data_dir) or _no_database_file(command, config.effective_database_url))
    try:
        if command == "serve":  # before anything imports prometheus-client (system checks import the URLs)
            from autoenroll.server.startup import prepare_metrics

            prepare_metrics()
        django.setup()
    except ImproperlyConfigured as exc:
        _stop(f"invalid setting: {exc}")
    except ModuleNotFoundError as exc:  # another server dependency (pydantic, ninja...); our own bugs propagate
        if not exc.name or exc.name.partition(".")[0] == "autoenroll":
            raise
        _not_installed(exc.name)
    _stop(_no_tables(command))
    from django.core.management import execute_from_command_line

    argv[0] = "autoenroll-server"
    try:
        execute_from_command_line(argv)
    except BrokenPipeError:  # `audit export | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit's flush
        raise SystemExit(1) from None


#: Commands that run without a database of this server (help, or making one).
WITHOUT_DATABASE = {"", "help", "--help", "-h", "init", "restore", "keytab", "version", "check", "migrate"}


def _stop(problem: str) -> None:
    if problem:
        sys.stderr.write(f"autoenroll-server: {problem}\n")
        raise SystemExit(2)


def _wrong_user(command: str, data_dir: Path) -> str:
    """root running a command on a data directory that belongs to the service account would leave files
    (a rotated CA's key, a new TLS key, serve's metrics folder) that the server cannot read: every
    enrollment then fails, or serve does not start."""
    if os.geteuid() != 0 or not data_dir.is_dir():  # (help too: Django's setup writes the secret key)
        return ""
    owner = data_dir.stat().st_uid
    if owner == 0:
        return ""
    import pwd

    try:
        name = pwd.getpwuid(owner).pw_name
    except KeyError:
        name = str(owner)
    return (
        f"{data_dir} belongs to {name}: run the command as {name} (runuser -u {name} -- autoenroll-server ...), "
        "or the files it writes could not be read by the server"
    )


def _hint() -> str:
    where = f"AUTOENROLL_CONFIG={os.environ.get('AUTOENROLL_CONFIG', '(unset)')}"
    return f"{where}: run `autoenroll-server init` first, or set AUTOENROLL_CONFIG to this server's configuration"


def _no_database_file(command: str, database_url: str) -> str:
    """A command run without the server's configuration (AUTOENROLL_CONFIG not exported in this shell)
    would find an empty default database, fail with a traceback and leave files behind."""
    if command in WITHOUT_DATABASE or not database_url.startswith("sqlite:"):
        return ""
    import dj_database_url

    name = str(dj_database_url.parse(database_url)["NAME"])  # as settings.py reads it
    return "" if name in ("", ":memory:") or Path(name).is_file() else f"no database at {name} ({_hint()})"


def _no_tables(command: str) -> str:
    """The database is there (PostgreSQL's always is) but was never initialised."""
    if command in WITHOUT_DATABASE:
        return ""
    from django.db import DatabaseError, connection

    try:
        tables = connection.introspection.table_names()
    except DatabaseError as exc:  # serve starts anyway: a database server still booting is answered by /healthz
        return "" if command == "serve" else f"the database cannot be opened: {exc}".strip()
    finally:
        connection.close()
    return "" if "django_migrations" in tables else f"the database holds no tables ({_hint()})"


if __name__ == "__main__":
    main()
