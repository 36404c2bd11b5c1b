"""The server's settings: one validated model, read from the environment and an optional TOML file.

Every setting is `AUTOENROLL_<NAME>` in the environment or `<name>` in the file named by
`AUTOENROLL_CONFIG`; the environment wins. A bad value stops the server at start with a message
that names the setting, instead of a failure deep inside a request hours later.
"""

from __future__ import annotations

import math
import os
import secrets
import tomllib
from functools import cache
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

import platformdirs
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    IPvAnyNetwork,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from autoenroll.pki.keytypes import CA_KEY_TYPES

ENV_PREFIX = "AUTOENROLL_"


class ConfigError(Exception):
    """A setting is missing or wrong; the message names it the way the admin wrote it."""


#: Worker processes by default at most: each holds its own database connections (and `serve`'s publication
#: listener runs as many again).
MAX_DEFAULT_WORKERS = 8


def default_workers(cores: int, quota: float | None) -> int:
    """One per core the server may use: a worker's threads wait for Kerberos, LDAP and the database with the
    GIL released, and a second process on the same core only adds contention (and Granian warns). `cores`
    the CPUs it may run on, `quota` the CPUs a container's cgroup allows it (None: no limit)."""
    if quota is not None:
        cores = min(cores, max(1, math.ceil(quota)))
    return max(1, min(cores, MAX_DEFAULT_WORKERS))


def _cpu_quota() -> float | None:
    """CPUs the cgroup allows (v2 `cpu.max`, v1 `cpu.cfs_quota_us`), None without a limit."""
    cgroup = Path("/sys/fs/cgroup")
    try:
        quota, period = (cgroup / "cpu.max").read_text().split()
    except (OSError, ValueError):
        try:
            quota, period = ((cgroup / "cpu" / f"cpu.cfs_{n}_us").read_text().strip() for n in ("quota", "period"))
        except OSError:
            return None
    try:
        return None if quota in ("max", "-1") else int(quota) / int(period)
    except (ValueError, ZeroDivisionError):  # not a cgroup file as documented: no limit known
        return None


def _default_workers() -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return default_workers(cores, _cpu_quota())


class ServerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    data_dir: Path = Field(default_factory=lambda: platformdirs.user_data_path("autoenroll"))
    database_url: str | None = None
    secret_key: SecretStr | None = None
    debug: bool = False
    allowed_hosts: list[str] = Field(default_factory=list)
    # Where agents send requests (the guide's `requestpath` points here): HTTPS, Kerberos.
    public_url: str = "https://localhost:8443"
    # Where relying parties fetch CRLs, OCSP answers and CA certificates: plain HTTP, as the
    # S/MIME Baseline Requirements want (the objects are signed; TLS there would be circular).
    publication_url: str = "http://localhost:8080"
    listen: str = "127.0.0.1:8443"
    publication_listen: str = "127.0.0.1:8080"
    workers: Annotated[int, Field(ge=1, le=64)] = Field(default_factory=_default_workers)
    threads: Annotated[int, Field(ge=1, le=64)] = 4  # per worker; Kerberos and LDAP calls release the GIL
    # A request's body is received within this time, before a thread takes the request (else 408).
    request_body_seconds: Annotated[int, Field(ge=1, le=3600)] = 30
    tls_cert: Path | None = None
    tls_key: Path | None = None
    ca_passphrase: SecretStr | None = None
    ca_passphrase_file: Path | None = None
    ca_key_type: str = "ec-p256"
    ca_name: str = "autoenroll"
    ca_organization: str = "autoenroll"
    certificate_days: Annotated[int, Field(ge=1, le=825)] = 365
    # Valid S/MIME certificates one person may hold: the current one and the one it replaces, by default.
    # Issuing past it supersedes the oldest (those never reported installed first).
    max_valid_certificates: Annotated[int, Field(ge=1, le=100)] = 2
    # Partitioned CRLs: each new S/MIME certificate names one of this many CRLs (`crl/<ca>/<n>.crl`, with an
    # issuing distribution point) besides the CA's full CRL, so relying parties fetch a fraction of a very
    # large revoked set. 1: one CRL. A certificate keeps the partition it was issued with when this changes.
    crl_partitions: Annotated[int, Field(ge=1, le=1024)] = 1
    # OCSP answers each worker keeps in memory (1.5 to 3 KB each), reused for the same request until a revocation
    # in their CA or for 5 minutes; 0: every request reads the records.
    ocsp_answers_kept: Annotated[int, Field(ge=0, le=1_000_000)] = 10_000
    # logon/enroll calls one principal may make per minute, per server process (429 beyond; 0: no limit).
    enroll_rate_per_minute: Annotated[int, Field(ge=0, le=100_000)] = 30
    # Networks AD servers may be in (CIDRs): the server connects to no other address a Customer Admin gives
    # as an AD Server Address (Verify and every search), nor to one a name resolves to. Empty: any.
    ad_networks: list[IPvAnyNetwork] = Field(default_factory=list)
    # Largest clock difference accepted between a client's Kerberos authenticator and this server.
    kerberos_clockskew: Annotated[int, Field(ge=0, le=3600)] = 300
    log_level: str = "INFO"
    # One line per request of the publication listener (CRL, OCSP, CA certificates) on stderr. Off by default:
    # every relying party that checks a signature asks, and the line cost a fifth of an OCSP answer's CPU.
    publication_access_log: bool = False
    # Bearer token Prometheus sends to GET /metrics on the HTTPS listener; unset: /metrics answers 404.
    metrics_token: SecretStr | None = None
    # Expiry notices (`notify`): the SMTP server that relays them; no host, no mail.
    smtp_host: str = ""
    smtp_port: Annotated[int, Field(ge=1, le=65535)] = 25
    smtp_starttls: bool = False
    smtp_user: str = ""
    smtp_password: SecretStr | None = None
    mail_from: str = ""
    # Days before notAfter at which the holder of a certificate not yet renewed is mailed, once each.
    expiry_notice_days: list[Annotated[int, Field(ge=1, le=365)]] = Field(default_factory=lambda: [30, 15, 2])

    @field_validator("public_url", "publication_url")
    @classmethod
    def _absolute_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an absolute http:// or https:// URL")
        return value.rstrip("/")

    @field_validator("public_url")
    @classmethod
    def _https(cls, value: str) -> str:
        if urlsplit(value).scheme != "https":
            raise ValueError("must be https://: Kerberos tickets and CSRs travel over it")
        return value

    @field_validator("listen", "publication_listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("must be HOST:PORT")
        return value

    @field_validator("ca_key_type")
    @classmethod
    def _key_type(cls, value: str) -> str:
        if value not in CA_KEY_TYPES:
            raise ValueError(f"must be one of {', '.join(CA_KEY_TYPES)}")
        return value

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        if value.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ValueError("must be DEBUG, INFO, WARNING or ERROR")
        return value.upper()

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str | None) -> str | None:
        if value is not None and urlsplit(value).scheme not in ("sqlite", "postgres", "postgresql"):
            raise ValueError("must be sqlite:///PATH or postgresql://USER:PASSWORD@HOST:PORT/NAME")
        return value

    @field_validator("expiry_notice_days")
    @classmethod
    def _notice_days(cls, value: list[int]) -> list[int]:
        if not value:
            raise ValueError("needs at least one number of days (30,15,2 by default)")
        return sorted(set(value), reverse=True)

    @model_validator(mode="after")
    def _mail(self) -> ServerConfig:
        if self.smtp_host and "@" not in self.mail_from:
            raise ValueError("mail_from (AUTOENROLL_MAIL_FROM) must be an address when smtp_host is set")
        if self.smtp_user and not self.smtp_starttls:
            raise ValueError("smtp_user needs smtp_starttls: the password must not cross the network in clear")
        return self

    @model_validator(mode="after")
    def _tls_pair(self) -> ServerConfig:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together")
        return self

    # Derived values -------------------------------------------------------------------------

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'autoenroll.sqlite3'}"

    @property
    def ca_dir(self) -> Path:
        return self.data_dir / "ca"

    @property
    def tls_cert_path(self) -> Path:
        return self.tls_cert or self.data_dir / "tls" / "server.pem"

    @property
    def tls_key_path(self) -> Path:
        return self.tls_key or self.data_dir / "tls" / "server.key"

    @property
    def effective_allowed_hosts(self) -> list[str]:
        if self.allowed_hosts:
            return self.allowed_hosts
        hosts = {"localhost", "127.0.0.1", "[::1]"}
        for url in (self.public_url, self.publication_url):
            hosts.add(urlsplit(url).hostname or "localhost")
        return sorted(hosts)

    def ca_passphrase_bytes(self) -> bytes:
        """The passphrase that unlocks the CA keys; from the environment or a file, never the repository."""
        if self.ca_passphrase is not None:
            return self.ca_passphrase.get_secret_value().encode()
        if self.ca_passphrase_file is not None:
            try:
                return self.ca_passphrase_file.read_bytes().rstrip(b"\r\n")
            except OSError as exc:
                msg = f"{ENV_PREFIX}CA_PASSPHRASE_FILE: cannot read {exc.filename}: {exc.strerror}"
                raise ConfigError(msg) from None
        raise ConfigError(
            f"{ENV_PREFIX}CA_PASSPHRASE or {ENV_PREFIX}CA_PASSPHRASE_FILE must be set to unlock the CA keys"
        )

    def metrics_token_value(self) -> str:
        return self.metrics_token.get_secret_value() if self.metrics_token is not None else ""

    def secret_key_value(self) -> str:
        """Django's SECRET_KEY: configured, or generated once into the data directory (mode 0600)."""
        if self.secret_key is not None:
            return self.secret_key.get_secret_value()
        path = self.data_dir / "secret_key"
        try:
            return path.read_text().strip()
        except FileNotFoundError:
            pass
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        value = secrets.token_urlsafe(50)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process won the race: use its key
            return path.read_text().strip()
        with os.fdopen(fd, "w") as f:
            f.write(value + "\n")
        return value


def _env_values(environ: dict[str, str]) -> dict[str, object]:
    values: dict[str, object] = {}
    for name in ServerConfig.model_fields:
        raw = environ.get(ENV_PREFIX + name.upper())
        if raw is None:
            continue
        lists = ("allowed_hosts", "expiry_notice_days", "ad_networks")
        values[name] = [h.strip() for h in raw.split(",") if h.strip()] if name in lists else raw
    return values


def load_config(environ: dict[str, str] | None = None) -> ServerConfig:
    """Read and validate the settings; raise ConfigError naming the first bad one."""
    environ = dict(os.environ if environ is None else environ)
    values: dict[str, object] = {}
    file_name = environ.get(ENV_PREFIX + "CONFIG")
    if file_name:
        try:
            with open(file_name, "rb") as f:
                values.update(tomllib.load(f))
        except OSError as exc:
            raise ConfigError(f"{ENV_PREFIX}CONFIG: cannot read {file_name}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{ENV_PREFIX}CONFIG: {file_name} is not valid TOML: {exc}") from None
    values.update(_env_values(environ))
    try:
        return ServerConfig(**values)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = [str(p) for p in err["loc"]]
        if loc and loc[0] in ServerConfig.model_fields:  # AUTOENROLL_EXPIRY_NOTICE_DAYS[1] for an item
            name = ENV_PREFIX + loc[0].upper() + "".join(f"[{p}]" for p in loc[1:])
        else:
            name = ".".join(loc) or "settings"
        raise ConfigError(f"{name}: {err['msg']}") from None


@cache
def get_config() -> ServerConfig:
    return load_config()
