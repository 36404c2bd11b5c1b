"""`autoenroll-server`: the server's command line, a thin front for Django management commands.

Settings are validated before anything else runs, so a typo in a setting ends with one line that
names it, not a stack trace. `pip install autoenroll` installs the agent only: there this command says
how to add the server instead of dying on a missing module.
"""

from __future__ import annotations

import os
import sys

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
    try:
        import django
        from django.core.exceptions import ImproperlyConfigured
    except ModuleNotFoundError as exc:
        _not_installed(exc.name or "django")
    try:
        if argv[1:2] == ["serve"]:  # before anything imports prometheus-client (system checks import the URLs)
            from autoenroll.server.startup import prepare_metrics

            prepare_metrics()
        django.setup()
    except ImproperlyConfigured as exc:
        sys.stderr.write(f"autoenroll-server: invalid setting: {exc}\n")
        raise SystemExit(2) from None
    except ModuleNotFoundError as exc:  # another server dependency (pydantic, ninja...); our own bugs propagate
        if not exc.name or exc.name.partition(".")[0] == "autoenroll":
            raise
        _not_installed(exc.name)
    from django.core.management import execute_from_command_line

    argv[0] = "autoenroll-server"
    execute_from_command_line(argv)


if __name__ == "__main__":
    main()
