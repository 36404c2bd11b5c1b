"""What a server process prepares once at start-up, before any request thread, and never at import.

Importing the settings must not write files or change the environment (tests, `manage.py check` and every
CLI command import them); the commands that serve or set up the server call these instead: `serve` before
it starts its workers (they inherit the environment), `init`, and the WSGI module for a server started
by hand.
"""

from __future__ import annotations

import os
import shutil
import sys
import threading

from django.conf import settings

__all__ = ["prepare_kerberos", "prepare_metrics"]

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


def prepare_metrics() -> None:
    """Where every process of this `serve` (its workers, the publication listener, the CRL watcher) keeps
    its Prometheus counters: prometheus-client's multiprocess directory, in the data directory, emptied (the
    counters restart with the server, as Prometheus expects of any restart).

    Set in the environment before prometheus-client is first imported, which decides the mode then; the
    processes `serve` starts inherit it and keep the directory as it is."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return
    if "prometheus_client" in sys.modules:
        raise RuntimeError("prometheus_client was imported before prepare_metrics(): the metrics would be per process")
    directory = settings.CONFIG.data_dir / "metrics"
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(mode=0o700, parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
