"""``autoenroll.conf``: the guide's keys (section 3.1), unchanged, read from the usual places.

The guide's file was deployed next to the logon script; here it may also live system-wide (deployed by
the admin) or per user. Files are read in that order, later ones overriding single keys:

    system-wide   Linux /etc/autoenroll/autoenroll.conf, macOS /Library/Application Support/autoenroll/,
                  Windows %PROGRAMDATA%\\autoenroll\\autoenroll.conf
    next to the program (the guide's way: the logon script directory)
    per-user      the platform's user config directory (Linux ~/.config/autoenroll/autoenroll.conf)

``--config FILE`` replaces all of them. Syntax: ``key = value`` (or ``key=value``) lines; ``#`` and ``;``
start comments; ``[section]`` lines are ignored; keys are case-insensitive.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from autoenroll.pki.keytypes import END_ENTITY_KEY_TYPES

FILE_NAME = "autoenroll.conf"
#: The guide's keys. ``issusername`` is the guide's spelling in section 3.1, kept as an alias.
REQUIRED = ("requestpath", "issuername", "domainname")
#: Without ``customeruri`` the server answers the guide's error 1 ("customeruri" was not provided in
#: autoenroll.conf), which the log shows as the guide's script did; the quick check needs no customer.
OPTIONAL = ("days", "orgid", "customeruri")
ALIASES = {"issusername": "issuername"}
#: Keys the guide does not have (the VBScript had CAPICOM and the Windows store built in).
EXTENSIONS = ("store", "cafile", "keytype")
DEFAULT_DAYS = 30
DEFAULT_KEY_TYPE = "rsa-3072"  # what every mail client can encrypt to; ec-p256 also works (ECDH)


class ConfigError(Exception):
    """The configuration cannot be used (missing file, missing required key, bad value)."""


@dataclass(frozen=True)
class Config:
    """The agent's settings; names follow the guide's ``autoenroll.conf``."""

    requestpath: str
    issuername: str
    domainname: str
    customeruri: str
    days: int = DEFAULT_DAYS
    orgid: str | None = None
    store: tuple[str, ...] = ()
    cafile: str | None = None
    keytype: str = DEFAULT_KEY_TYPE
    sources: tuple[str, ...] = ()
    warnings: tuple[str, ...] = field(default=(), compare=False)

    @property
    def host(self) -> str:
        return urlsplit(self.requestpath).hostname or ""


def system_config_path() -> Path:
    if sys.platform == "win32":
        return Path(os.environ.get("PROGRAMDATA", r"C:\ProgramData"), "autoenroll", FILE_NAME)
    if sys.platform == "darwin":
        return Path("/Library/Application Support/autoenroll", FILE_NAME)
    return Path("/etc/autoenroll", FILE_NAME)


def user_config_path() -> Path:
    import platformdirs

    return Path(platformdirs.user_config_dir("autoenroll", appauthor=False, roaming=True), FILE_NAME)


def program_config_path() -> Path:
    """Next to the program: the frozen executable, or the script/entry point that was started."""
    exe = sys.executable if getattr(sys, "frozen", False) else sys.argv[0] or sys.executable
    return Path(exe).resolve().parent / FILE_NAME


def default_paths() -> list[Path]:
    """Where configuration is looked for, lowest precedence first."""
    return [system_config_path(), program_config_path(), user_config_path()]


def parse(text: str, source: str = FILE_NAME) -> tuple[dict[str, str], list[str]]:
    """Key/value pairs and warnings (unknown keys, lines that are not ``key = value``)."""
    values: dict[str, str] = {}
    warnings: list[str] = []
    known = set(REQUIRED) | set(OPTIONAL) | set(EXTENSIONS) | set(ALIASES)
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip().lstrip("\ufeff")
        if not line or line[0] in "#;" or (line.startswith("[") and line.endswith("]")):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            key, sep, value = line.partition(":")
        key = key.strip().lower()
        if not sep or not key:
            warnings.append(f"{source}:{number}: ignored line (not key = value): {raw.strip()!r}")
            continue
        if key not in known:
            warnings.append(f"{source}:{number}: unknown key {key!r} ignored")
            continue
        values[ALIASES.get(key, key)] = value.strip().strip('"').strip("'")
    return values, warnings


def load(path: str | os.PathLike[str] | None = None, *, search: Iterable[Path] | None = None) -> Config:
    """Read the configuration: ``path`` alone when given, else every existing default location."""
    if path is not None:
        files = [Path(path)]
        if not files[0].is_file():
            raise ConfigError(f"configuration file {path} not found")
    else:
        files = [p for p in (search if search is not None else default_paths()) if p.is_file()]
        if not files:
            places = ", ".join(str(p) for p in (search if search is not None else default_paths()))
            raise ConfigError(f"no {FILE_NAME} found (looked in {places}); or pass --config FILE")
    values: dict[str, str] = {}
    warnings: list[str] = []
    for f in files:
        try:
            text = f.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read {f}: {exc}") from None
        found, warned = parse(text, str(f))
        values.update(found)
        warnings.extend(warned)
    return build(values, sources=tuple(str(f) for f in files), warnings=tuple(warnings))


def build(values: dict[str, str], *, sources: tuple[str, ...] = (), warnings: tuple[str, ...] = ()) -> Config:
    """Check the values and make a Config; a missing required key or a bad value is a ConfigError."""
    where = " or ".join(sources) or FILE_NAME
    missing = [k for k in REQUIRED if not values.get(k)]
    if missing:
        raise ConfigError(f"required key {', '.join(missing)} missing in {where}")
    try:
        url = urlsplit(values["requestpath"])
        url.port  # noqa: B018 - raises ValueError for a port out of range or not a number
    except ValueError:
        url = None
    if url is None or url.scheme != "https" or not url.hostname:
        raise ConfigError(f"requestpath must be an https:// URL, got {values['requestpath'][:200]!r}")
    days_text = values.get("days") or str(DEFAULT_DAYS)
    if not (days_text.isascii() and days_text.isdigit() and len(days_text) <= 5):  # isdigit alone takes "²"
        raise ConfigError(f"days must be a whole number of days, got {days_text[:20]!r}")
    for key in ("store", "cafile"):
        if "\x00" in (values.get(key) or ""):
            raise ConfigError(f"{key} holds a NUL character")
    keytype = (values.get("keytype") or DEFAULT_KEY_TYPE).lower()
    if keytype not in END_ENTITY_KEY_TYPES:
        raise ConfigError(f"keytype must be one of {', '.join(END_ENTITY_KEY_TYPES)}, got {keytype!r}")
    stores = tuple(s.strip() for s in (values.get("store") or "").split(",") if s.strip())
    return Config(
        requestpath=values["requestpath"],
        issuername=values["issuername"],
        domainname=values["domainname"],
        customeruri=values.get("customeruri") or "",
        days=int(days_text),
        orgid=values.get("orgid") or None,
        store=stores,
        cafile=values.get("cafile") or None,
        keytype=keytype,
        sources=sources,
        warnings=warnings,
    )
