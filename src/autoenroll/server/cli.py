"""`autoenroll-server`: the server's command line, a thin front for Django management commands.

Settings are validated before anything else runs, so a typo in a setting ends with one line that
names it, not a stack trace.
"""

from __future__ import annotations

import os
import sys


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv if argv is None else argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "autoenroll.server.settings")
    from django.core.exceptions import ImproperlyConfigured

    try:
        import django

        django.setup()
    except ImproperlyConfigured as exc:
        sys.stderr.write(f"autoenroll-server: invalid setting: {exc}\n")
        raise SystemExit(2) from None
    from django.core.management import execute_from_command_line

    argv[0] = "autoenroll-server"
    execute_from_command_line(argv)


if __name__ == "__main__":
    main()
