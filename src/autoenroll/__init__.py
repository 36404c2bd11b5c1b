"""autoenroll: S/MIME certificates for every Active Directory user, with no clicks.

`autoenroll.agent` is the logon client, `autoenroll.server` the Django server; both speak
`autoenroll.protocol`, and the server signs through `autoenroll.pki`.
"""

from __future__ import annotations

__all__ = ["version"]


def version() -> str:
    """The installed distribution's version: pyproject.toml is the one place it is written.

    Read on demand (``importlib.metadata`` costs the agent's quick logon more than the logon's own work).
    """
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as distribution_version

    try:
        return distribution_version("autoenroll")
    except PackageNotFoundError:  # a source tree on sys.path, never installed
        return "0+unknown"


def __getattr__(name: str) -> str:
    if name == "__version__":
        return version()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
