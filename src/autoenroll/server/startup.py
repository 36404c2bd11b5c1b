"""What a server process prepares once at start-up, before any request thread, and never at import.

Importing the settings must not write files or change the environment (tests, `manage.py check` and every
CLI command import them); the commands that serve or set up the server call these instead: `serve` before
gunicorn forks its workers (they inherit the environment), `init`, and the WSGI module for a gunicorn
started by hand.
"""

from __future__ import annotations

import os
import threading

from django.conf import settings

__all__ = ["prepare_kerberos"]

_lock = threading.Lock()
_prepared: dict[str, str] | None = None


def prepare_kerberos() -> dict[str, str]:
    """Replay cache in the data directory and the configured clock skew, set in this process's environment
    (and so in every process it starts) the first time; the variables set.

    libkrb5 reads these variables with getenv: setting them while request threads run would race, hence once.
    """
    global _prepared
    with _lock:
        if _prepared is None:
            from autoenroll.server.kerberos.spnego import kerberos_environment

            config = settings.CONFIG
            _prepared = kerberos_environment(config.data_dir, config.kerberos_clockskew)
            os.environ.update(_prepared)
        return dict(_prepared)
