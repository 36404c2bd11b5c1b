"""`autoenroll-server backup FILE` and `restore FILE`: come back after a lost disk with the CA and the record of
what it issued.

A backup is a gzip'd tar, written while the server serves:

* the database as the database makes a consistent copy of itself: SQLite's online backup, or `pg_dump`
  (one snapshot);
* the files of the data directory that matter: the CA certificates and their keys (encrypted with the CA
  passphrase, as on disk), the OCSP responders' keys (likewise), the TLS certificate, the admin's templates;
* `secrets.enc`: Django's SECRET_KEY (it encrypts the AD login passwords in the database), the TLS key and the
  settings the admin gave the server (its TOML file and environment: they hold the SMTP password and the
  URLs its certificates name), encrypted with a key derived from the CA passphrase;
* `manifest.json`: what was taken, for `restore` to check.

Never the CA passphrase: without it a backup opens nothing. `restore` goes into an empty data directory (and
an empty PostgreSQL database), needs the same passphrase, moves the CA key paths to the new directory, and
continues each CA's CRL numbers above anything the lost server can have issued after the backup. It writes
the backed-up settings to `settings-from-backup.toml` in the new data directory and names those that differ
here: certificates already issued name the old publication URL, and agents the old public URL.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import io
import json
import os
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import tomli_w
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC
from django.core.management import call_command
from django.db import connection, transaction
from django.db.models import F
from django.db.models.functions import Greatest
from pydantic import SecretStr

from autoenroll import pki, version
from autoenroll.server.config import ServerConfig

FORMAT = 1
#: Data directory entries a backup carries (besides the database and the secrets).
DATA_ENTRIES = ("ca", "ocsp", "templates", "tls/server.pem")
#: Settings a backup does not carry: never the CA passphrase; the SECRET_KEY travels on its own.
NOT_CARRIED = frozenset({"ca_passphrase", "secret_key"})
#: Settings of the new host, which a restore is expected to change.
OF_THE_HOST = frozenset({"data_dir", "database_url", "ca_passphrase_file", "tls_cert", "tls_key"})
SECRET_SETTINGS = frozenset(n for n, f in ServerConfig.model_fields.items() if "SecretStr" in str(f.annotation))
#: Where `restore` writes the backed-up server's settings, for the admin to take into this server's.
SETTINGS_FILE = "settings-from-backup.toml"
_CONSEQUENCES = {
    "publication_url": "the certificates and CRLs already issued name the backup's URL: serve it there too",
    "public_url": "agents and Windows clients are configured with the backup's URL",
}


class BackupError(Exception):
    """The backup cannot be made or restored; the message says why and what to do."""


@dataclass(frozen=True)
class Manifest:
    created: str
    database: str
    certificates: int
    crl_numbers: dict[str, int]
    data_dir: str

    def as_json(self, salt: bytes) -> bytes:
        return json.dumps({"format": FORMAT, "version": version(), "salt": base64.b64encode(salt).decode(),
                           **self.__dict__}, indent=2).encode()  # fmt: skip


def _cipher(passphrase: bytes, salt: bytes) -> Fernet:
    kdf = PBKDF2HMAC(hashes.SHA256(), 32, salt, pki.PBKDF2_ITERATIONS)
    return Fernet(base64.urlsafe_b64encode(kdf.derive(passphrase)))


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o600, int(time.time())
    tar.addfile(info, io.BytesIO(data))


def _pg_tool(name: str) -> str:
    """pg_dump / pg_restore: on the PATH, or the newest of Debian's /usr/lib/postgresql/*/bin."""
    found = shutil.which(name)
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), key=lambda p: int(p.parts[-3]))
    if candidates:
        return str(candidates[-1])
    if found:
        return found
    raise BackupError(f"{name} is not installed (Debian: apt install postgresql-client)")


def backup(config: ServerConfig, target: Path) -> Manifest:
    """Write the backup to `target` (mode 0600; replaced only once complete)."""
    from autoenroll.server.certificates.models import CertificateAuthority

    passphrase = config.ca_passphrase_bytes()
    salt = os.urandom(16)
    target = Path(target)
    if not target.parent.is_dir():
        raise BackupError(f"{target.parent} is not a directory: make it first (owned by the user running this)")
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".backup-") as work:
        work_dir = Path(work)
        vendor = connection.vendor
        database = work_dir / ("database.pgdump" if vendor == "postgresql" else "database.sqlite3")
        if vendor == "postgresql":  # pg_dump dumps the snapshot the facts were read in
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                cursor.execute("SELECT pg_export_snapshot()")
                snapshot = cursor.fetchone()[0]
                certificates, crl_numbers = _facts(cursor)
                _pg_dump(config, database, snapshot)
        else:  # the facts are read from the copy itself
            _sqlite_backup(config, database)
            with contextlib.closing(sqlite3.connect(database)) as copy:
                certificates, crl_numbers = _facts(copy.cursor())
        manifest = Manifest(
            created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            database=vendor,
            certificates=certificates,
            crl_numbers=crl_numbers,
            data_dir=str(config.data_dir),
        )
        cas = list(CertificateAuthority.objects.order_by("pk"))
        secrets = {"secret_key": config.secret_key_value(), "settings": _carried_settings(config)}
        if config.tls_key_path.is_file():
            secrets["tls_key"] = config.tls_key_path.read_text()
        fd = os.open(work_dir / "backup.tar.gz", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
            _add_bytes(tar, "manifest.json", manifest.as_json(salt))
            tar.add(database, database.name)
            _add_bytes(tar, "secrets.enc", _cipher(passphrase, salt).encrypt(json.dumps(secrets).encode()))
            for entry in DATA_ENTRIES:
                path = config.data_dir / entry
                if path.exists():
                    tar.add(path, f"files/{entry}", filter=_without_locks)
            for ca in cas:  # keys kept outside the data directory (an HSM's URI is no file: the token is its backup)
                key = Path(ca.key_path) if ca.key_path and not ca.key_path.startswith("pkcs11:") else None
                if key is not None and key.is_file() and not key.is_relative_to(config.data_dir):
                    tar.add(key, f"keys/{ca.name}.key")
        os.replace(work_dir / "backup.tar.gz", target)
    return manifest


def _plain(value):
    """A setting's value as TOML writes it."""
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    return str(value) if isinstance(value, Path) else value


def _carried_settings(config: ServerConfig) -> dict:
    """The settings the admin gave (the TOML file and the environment), not their defaults."""
    values = {name: _plain(getattr(config, name)) for name in sorted(config.model_fields_set - NOT_CARRIED)}
    return {name: value for name, value in values.items() if value is not None}  # (TOML has no null)


def _facts(cursor) -> tuple[int, dict[str, int]]:
    """What the copy holds: its certificates and each CA's last CRL number."""
    from autoenroll.server.certificates.models import Certificate, CertificateAuthority

    cursor.execute(f"SELECT COUNT(*) FROM {Certificate._meta.db_table}")  # noqa: S608 - the model's table
    certificates = cursor.fetchone()[0]
    cursor.execute(f"SELECT name, crl_number FROM {CertificateAuthority._meta.db_table}")  # noqa: S608
    return certificates, dict(cursor.fetchall())


def _without_locks(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    return None if info.name.endswith("/.lock") else info


def _sqlite_backup(config: ServerConfig, database: Path) -> None:
    """SQLite's online backup API: a consistent copy while other processes write."""
    source = sqlite3.connect(_sqlite_path(config))
    copy = sqlite3.connect(database)
    try:
        source.backup(copy)
    finally:
        copy.close()
        source.close()


def _pg_dump(config: ServerConfig, database: Path, snapshot: str) -> None:
    done = subprocess.run(
        [_pg_tool("pg_dump"), "--format=custom", "--no-owner", f"--snapshot={snapshot}", f"--file={database}",
         f"--dbname={_pg_url(config)}"],
        capture_output=True, text=True, timeout=3600,
    )  # fmt: skip
    if done.returncode != 0:
        raise BackupError(f"pg_dump failed: {done.stderr.strip()[-1000:]}")


def _pg_url(config: ServerConfig) -> str:
    url = config.effective_database_url
    return "postgresql://" + url.split("://", 1)[1]  # libpq knows postgresql:// and postgres://


# --- restore -------------------------------------------------------------------------------------------------


class Restored(NamedTuple):
    manifest: dict
    settings_file: Path
    #: "name: why it matters", for each backed-up setting that differs here (secrets by name only)
    differences: list[str]


def restore(config: ServerConfig, source: Path) -> Restored:
    """Restore `source` into this (empty) data directory and database."""
    from autoenroll.server.certificates.models import Certificate, CertificateAuthority

    with tarfile.open(source, "r:gz") as tar:
        manifest = json.loads(tar.extractfile("manifest.json").read())
        if manifest.get("format") != FORMAT:
            raise BackupError(f"{source} is not an autoenroll backup of format {FORMAT}")
        if manifest["database"] != connection.vendor:
            raise BackupError(
                f"the backup holds a {manifest['database']} database and this server uses {connection.vendor}: "
                "restore into the same kind of database"
            )
        _check_empty(config)
        try:
            secrets = json.loads(
                _cipher(config.ca_passphrase_bytes(), base64.b64decode(manifest["salt"])).decrypt(
                    tar.extractfile("secrets.enc").read()
                )
            )
        except InvalidToken:
            raise BackupError("the CA passphrase does not open this backup: use the passphrase of its server") from None
        if config.secret_key is not None and config.secret_key.get_secret_value() != secrets["secret_key"]:
            raise BackupError(
                "AUTOENROLL_SECRET_KEY differs from the backed-up server's: the AD passwords in the database "
                "would not decrypt; unset it (the backup's is restored) or set the old value"
            )
        config.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        config.data_dir.chmod(0o700)  # as init leaves it: the CA keys and the database are in there
        try:
            for member in tar.getmembers():
                if member.name.startswith(("files/", "keys/")):
                    _extract(tar, member, _staging(config))
            database = tar.extractfile(
                "database.pgdump" if manifest["database"] == "postgresql" else "database.sqlite3"
            )
            _restore_database(config, database, manifest["database"])
        except BaseException:
            shutil.rmtree(_staging(config), ignore_errors=True)  # the files only go in with the database
            raise
    _place_files(config, secrets)
    connection.close()
    call_command("migrate", verbosity=0)  # a backup of an older version gets this version's schema
    old_dir = Path(manifest["data_dir"])
    for ca in CertificateAuthority.objects.all():
        moved = _moved_key(config, ca.name, ca.key_path, old_dir)
        if moved is not None:
            CertificateAuthority.objects.filter(pk=ca.pk).update(key_path=str(moved))
    # CRL numbers never go back: the lost server may have issued CRLs after the backup; continue above any
    # number it can have reached, from the Unix time of the restore.
    CertificateAuthority.objects.update(crl_number=Greatest(F("crl_number"), int(time.time())))
    restored = Certificate.objects.count()
    if restored != manifest["certificates"]:
        raise BackupError(f"restored {restored} certificates, the backup says {manifest['certificates']}")
    carried = secrets.get("settings", {})  # (none in a backup of an older version)
    settings_file = config.data_dir / SETTINGS_FILE
    # without the old host's paths: the file is there to be taken into this server's autoenroll.toml
    _write_private(settings_file, tomli_w.dumps({k: v for k, v in carried.items() if k not in OF_THE_HOST}))
    return Restored(manifest, settings_file, _differences(config, carried))


def _differences(config: ServerConfig, carried: dict) -> list[str]:
    differences = []
    for name, value in carried.items():
        here = _plain(getattr(config, name, None))
        if name in OF_THE_HOST or here == value:
            continue
        if name in SECRET_SETTINGS:  # by name only, set here or not
            line = f"{name} (a secret)"
        else:
            line = f"{name}: {value!r} in the backup, {here!r} here"
        differences.append(line + (f": {_CONSEQUENCES[name]}" if name in _CONSEQUENCES else ""))
    return differences


def _staging(config: ServerConfig) -> Path:
    return config.data_dir / ".restore"


def _sqlite_path(config: ServerConfig) -> Path:
    return Path(config.effective_database_url.removeprefix("sqlite:///"))


def _check_empty(config: ServerConfig) -> None:
    if connection.vendor == "sqlite":  # (asking SQLite for its tables would create the file)
        path = _sqlite_path(config)
        not_empty = path.exists() and path.stat().st_size > 0
    else:
        not_empty = bool(connection.introspection.table_names())
    if not_empty:
        raise BackupError("the database is not empty: restore into a new data directory and an empty database")
    for entry in DATA_ENTRIES:  # (not secret_key: loading the settings generated one for this process)
        if (config.data_dir / entry).exists():
            raise BackupError(f"{config.data_dir / entry} exists: restore into an empty data directory")


def _restore_database(config: ServerConfig, database, vendor: str) -> None:
    connection.close()
    if vendor == "postgresql":
        with tempfile.NamedTemporaryFile(dir=config.data_dir, suffix=".pgdump") as dump:
            shutil.copyfileobj(database, dump)
            dump.flush()
            done = subprocess.run(
                [_pg_tool("pg_restore"), "--no-owner", "--exit-on-error", "--single-transaction",
                 f"--dbname={_pg_url(config)}", dump.name],
                capture_output=True, text=True, timeout=3600,
            )  # fmt: skip
        if done.returncode != 0:
            raise BackupError(f"pg_restore failed: {done.stderr.strip()[-1000:]}")
        return
    path = _sqlite_path(config)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, delete=False) as out:  # created 0600
        shutil.copyfileobj(database, out)
    os.replace(out.name, path)


def _extract(tar: tarfile.TarFile, member: tarfile.TarInfo, dest: Path) -> None:
    """Extract a file or directory of the backup, refusing anything else (links, devices, absolute or
    climbing paths), as tarfile's "data" filter does; Python before 3.11.4 (Debian 12's 3.11.2) has no
    filters, so the same refusals are made here."""
    name = Path(member.name)
    if not (member.isfile() or member.isdir()) or name.is_absolute() or ".." in name.parts:
        raise BackupError(f"the backup holds {member.name!r}, which is not a plain file: refused")
    if hasattr(tarfile, "data_filter"):
        tar.extract(member, dest, filter="data")
        return
    tar.extract(member, dest, set_attrs=False)
    if member.isfile():
        (dest / name).chmod(member.mode & 0o644)


def _place_files(config: ServerConfig, secrets: dict) -> None:
    staging = _staging(config)
    for entry in DATA_ENTRIES:
        path = staging / "files" / entry
        if path.exists():
            (config.data_dir / entry).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.replace(path, config.data_dir / entry)
    if (staging / "keys").exists():
        (config.data_dir / "ca").mkdir(exist_ok=True, mode=0o700)
        for key in (staging / "keys").iterdir():
            os.replace(key, config.data_dir / "ca" / key.name)
    shutil.rmtree(staging)
    for name, text in (("secret_key", secrets["secret_key"] + "\n"), ("tls/server.key", secrets.get("tls_key"))):
        if text:
            _write_private(config.data_dir / name, text)


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False) as out:  # created 0600
        out.write(text)
    os.replace(out.name, path)


def _moved_key(config: ServerConfig, ca_name: str, key_path: str, old_dir: Path) -> Path | None:
    """Where a CA's key file is after the restore (None: not a file, an HSM's URI)."""
    if not key_path or key_path.startswith("pkcs11:"):
        return None
    old = Path(key_path)
    if old.is_relative_to(old_dir):
        return config.data_dir / old.relative_to(old_dir)
    return config.data_dir / "ca" / f"{ca_name}.key"
