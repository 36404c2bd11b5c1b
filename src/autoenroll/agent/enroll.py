"""``autoenroll run``: what ExchangeEnroll.vbs did at every logon, step by step, each step in the log.

open the stores (31) -> a valid certificate from ``issuername`` for the user's mail with more than
``days`` left? then stop, without contacting anyone -> otherwise sync (40; the mail comes from AD, 32
when there is none) -> new key and CSR (33) -> enroll and wait for the certificate (34, 38) -> install
(39) -> report ``installed`` with the replaced serial, so the server revokes it.

The user's mail (from the last sync answer) is remembered in a small state file, so that the quick
check needs no server; a status report that could not be delivered is remembered there too and sent at
the next run (the old certificate must not stay valid forever).
"""

from __future__ import annotations

import datetime
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autoenroll.protocol import CATALOGUE, EnrollmentError
from autoenroll.protocol import messages as msg

from .config import Config, ConfigError
from .log import RunLog
from .stores import Installed, Request, Store, open_stores

if TYPE_CHECKING:
    from .client import EnrollmentClient

EXIT_OK = 0
EXIT_UNEXPECTED = 70  # EX_SOFTWARE: a bug; the log has the traceback's last line
EXIT_CONFIG = 78  # EX_CONFIG: autoenroll.conf unusable
NO_EMAIL = 32


def state_path() -> Path:
    override = os.environ.get("AUTOENROLL_STATE")
    if override:
        return Path(override)
    import platformdirs

    return Path(platformdirs.user_state_dir("autoenroll", appauthor=False), "state.json")


@dataclass
class State:
    """What the agent remembers between logons: who the user is (from AD) and an unsent status report."""

    principal: str = ""
    mail: str = ""
    cn: str = ""
    unreported: dict[str, Any] | None = None
    path: Path = field(default_factory=state_path)

    @classmethod
    def load(cls, path: Path | None = None) -> State:
        path = path or state_path()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return cls(path=path)
        return cls(
            principal=str(data.get("principal", "")),
            mail=str(data.get("mail", "")),
            cn=str(data.get("cn", "")),
            unreported=data.get("unreported") or None,
            path=path,
        )

    def save(self) -> None:
        data = {"principal": self.principal, "mail": self.mail, "cn": self.cn, "unreported": self.unreported}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}")
            tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError:
            pass  # only an optimisation: next time the agent syncs first


def matches(cert: Installed, issuername: str, mail: str, now: datetime.datetime) -> bool:
    """In force, for this mail, from this issuer. As CAPICOM's find-by-issuer-name that the guide's
    script used, ``issuername`` matches any part of the issuer's name, case-insensitively."""
    return (
        issuername.lower() in cert.issuer.lower()
        and mail.lower() in cert.mails
        and cert.not_before <= now < cert.not_after
    )


def current(certs: list[Installed], config: Config, mail: str, now: datetime.datetime) -> Installed | None:
    """The newest certificate in force for the mail (the one a renewal replaces)."""
    valid = [c for c in certs if matches(c, config.issuername, mail, now)]
    return max(valid, key=lambda c: c.not_after) if valid else None


def is_due(cert: Installed | None, days: int, now: datetime.datetime) -> bool:
    """Guide 3.1: with days = 20 and expiry on 6/30, the new certificate is enrolled on 6/10."""
    return cert is None or cert.not_after - now <= datetime.timedelta(days=days)


class Failure(Exception):
    """Ends the run with a number from the guide (the exit code)."""

    def __init__(self, code: int, message: str, detail: str = "") -> None:
        self.code, self.message, self.detail = code, message, detail
        super().__init__(f"Error {code}: {message}")


def _failure(exc: Exception) -> Failure:
    from .client import ServerRefusal

    if isinstance(exc, EnrollmentError):
        return Failure(exc.code, exc.message, exc.detail)
    if isinstance(exc, ServerRefusal):
        if 1 <= exc.code <= 30:
            return Failure(exc.code, exc.message, f"HTTP {exc.status}")
        return Failure(36, CATALOGUE[36].message, f"server error {exc.code}: {exc.message} (HTTP {exc.status})")
    raise exc


class Run:
    """One ``autoenroll run``."""

    def __init__(self, config: Config, log: RunLog, *, force: bool = False) -> None:
        self.config, self.log, self.force = config, log, force
        self.now = datetime.datetime.now(datetime.UTC)
        self.state = State.load()
        self._client: Any = None

    # ---- the steps ----

    def __call__(self) -> int:
        try:
            return self._run()
        except ConfigError as exc:
            self.log.warning(f"configuration: {exc}")
            return EXIT_CONFIG
        except Exception as exc:  # noqa: BLE001 - every outcome ends in the log with a number
            try:
                failure = _failure(exc)
            except Exception as other:  # noqa: BLE001 - a bug: log it, never a traceback at logon
                self.log.warning(f"unexpected {type(other).__name__}: {other}")
                return EXIT_UNEXPECTED
            self.log.error(failure.code, failure.message, failure.detail)
            return failure.code
        finally:
            if self._client is not None:
                self._client.close()

    def _run(self) -> int:
        config = self.config
        for warning in config.warnings:
            self.log.warning(warning)
        try:
            stores = open_stores(config.store)
        except ValueError as exc:
            raise ConfigError(f"store: {exc}") from None
        if not stores:
            raise EnrollmentError(31, f"no store found for {', '.join(config.store)}")
        inventory = self._open(stores)
        mail = self.state.mail
        if mail and not self.force and not self.state.unreported:
            if self._nothing_due(stores, inventory, mail):
                return EXIT_OK
        client = self.client()
        if self.state.unreported:
            self._report(self.state.unreported)
        mail = self._sync(client)
        if not self.force and self._nothing_due(stores, inventory, mail):
            return EXIT_OK
        replaced = next((c for s in stores if (c := current(inventory[s.name], config, mail, self.now))), None)
        primary = stores[0]
        request = primary.create_request(self.state.cn, mail, config.keytype)
        self.log.step(f"request: new {config.keytype} key in {primary.name}, CSR for CN={self.state.cn} <{mail}>")
        certificate, chain = self._enroll(client, request, mail)
        installed_in = self._install(stores, request, certificate, chain)
        serial = format(certificate.serial_number, "x")
        report = {"customeruri": config.customeruri, "status": msg.STATUS_INSTALLED, "serial": serial}
        if replaced is not None and replaced.serial != serial:
            report["replaced_serial"] = replaced.serial
        self.state.unreported = report
        self.state.save()
        self._report(report)
        if replaced is not None:
            for store in installed_in:
                for old in inventory[store.name]:
                    if old.serial == replaced.serial:
                        store.supersede(old)
        days_left = (certificate.not_valid_after_utc - self.now).days
        self.log.step(f"done: certificate {serial} for {mail} installed, valid {days_left} days")
        return EXIT_OK

    def _open(self, stores: list[Store]) -> dict[str, list[Installed]]:
        inventory = {}
        for store in stores:
            inventory[store.name] = store.certificates()
        return inventory

    def _nothing_due(self, stores: list[Store], inventory: dict[str, list[Installed]], mail: str) -> bool:
        """True when every store holds a certificate that is not due (copying one between stores if needed)."""
        config = self.config
        first = current(inventory[stores[0].name], config, mail, self.now)
        if is_due(first, config.days, self.now):
            return False
        assert first is not None
        missing = [s for s in stores[1:] if not any(c.serial == first.serial for c in inventory[s.name])]
        if missing and not self._copy(stores[0], first, missing):
            return False
        self.log.step(
            f"check: certificate {first.serial} for {mail} from {first.issuer} valid until "
            f"{first.not_after:%Y-%m-%d} ({int(first.days_left(self.now))} days left, renewal {config.days} days "
            "before): nothing to do"
        )
        return True

    def _copy(self, source: Store, cert: Installed, targets: list[Store]) -> bool:
        """A store added later (a new Thunderbird profile) gets the current identity without a new enrollment."""
        from .stores.folder import FolderStore

        if not isinstance(source, FolderStore):
            return False
        key = source.key_for(cert.certificate)
        if key is None:
            return False
        request = Request("", key)
        for store in targets:
            store.install(request, cert.certificate, source.chain_for(cert))
            self.log.step(f"install: certificate {cert.serial} copied from {source.name} into {store.name}")
        return True

    def client(self) -> EnrollmentClient:
        """The connection to the server, made only when something has to be asked."""
        from .client import EnrollmentClient

        if self._client is None:
            self._client = EnrollmentClient(self.config.requestpath, cafile=self.config.cafile)
            self.log.step(
                f"connect: {self.config.requestpath} ({self._client.address}), Kerberos SPN HTTP@{self._client.host}"
            )
        return self._client

    def _sync(self, client: EnrollmentClient) -> str:
        from .client import timeouts

        config = self.config
        body: dict[str, Any] = {"customeruri": config.customeruri, "domainname": config.domainname}
        if config.orgid:
            body["orgid"] = config.orgid
        answer = client.sync(body, timeouts()[0])
        principal, mail = str(answer.get("principal") or ""), str(answer.get("email") or "")
        self.log.step(f"sync: {principal or '?'} has mail {mail or '(none)'} in AD, orgid {answer.get('orgid')}")
        if not mail:
            raise EnrollmentError(NO_EMAIL, principal)
        self.state.principal, self.state.mail = principal, mail
        self.state.cn = str(answer.get("cn") or principal.partition("@")[0])
        self.state.save()
        return mail

    def _enroll(self, client: EnrollmentClient, request: Request, mail: str) -> tuple[Any, list[Any]]:
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization

        from .client import timeouts

        config = self.config
        body: dict[str, Any] = {"customeruri": config.customeruri, "email": mail, "cn": self.state.cn}
        body["csr"] = request.csr_pem
        if config.orgid:
            body["orgid"] = config.orgid
        deadline = time.monotonic() + timeouts()[1]
        answer = client.enroll(body, deadline)
        try:
            certificate = x509.load_pem_x509_certificate(str(answer["certificate"]).encode())
            chain = x509.load_pem_x509_certificates(answer["chain"].encode()) if answer.get("chain") else []
            csr = x509.load_pem_x509_csr(request.csr_pem.encode())
        except ValueError as exc:
            raise EnrollmentError(38, f"unreadable certificate in the answer: {exc}") from None
        spki = serialization.PublicFormat.SubjectPublicKeyInfo
        der = serialization.Encoding.DER
        if certificate.public_key().public_bytes(der, spki) != csr.public_key().public_bytes(der, spki):
            raise EnrollmentError(38, "the certificate does not certify the key of the request")
        self.log.step(
            f"enroll: request {answer.get('request_id')} issued certificate {format(certificate.serial_number, 'x')} "
            f"by {certificate.issuer.rfc4514_string()}, valid until {certificate.not_valid_after_utc:%Y-%m-%d}"
        )
        return certificate, chain

    def _install(self, stores: list[Store], request: Request, certificate, chain) -> list[Store]:
        done = []
        for store in stores:
            try:
                where = store.install(request, certificate, chain)
            except EnrollmentError:
                report = {
                    "customeruri": self.config.customeruri,
                    "status": msg.STATUS_FAILED,
                    "serial": format(certificate.serial_number, "x"),
                }
                try:
                    self._report(report)
                except Exception as exc:  # noqa: BLE001 - the install error is the one to show
                    self.log.warning(f"status: could not report the failure: {exc}")
                raise
            self.log.step(f"install: certificate in {store.name} ({where})")
            done.append(store)
        return done

    def _report(self, report: dict[str, Any]) -> None:
        from .client import timeouts

        answer = self.client().status(report, timeouts()[0])
        self.state.unreported = None
        self.state.save()
        revoked = answer.get("revoked_serial")
        self.log.step(
            f"status: reported {report['status']} {report.get('serial', '')}"
            + (f"; the server revoked the replaced certificate {revoked}" if revoked else "")
        )


def status_lines(config: Config, now: datetime.datetime | None = None) -> tuple[list[str], int]:
    """The guide's section 5 check as text: each store's certificates with issuer, serial, validity."""
    now = now or datetime.datetime.now(datetime.UTC)
    state = State.load()
    lines: list[str] = []
    code = EXIT_OK
    for store in open_stores(config.store):
        try:
            certs = store.certificates()
        except EnrollmentError as exc:
            lines.append(f"{store.name}: Error {exc.code}: {exc.message} ({exc.detail})")
            code = exc.code
            continue
        lines.append(f"{store.name}: {len(certs)} certificate(s)")
        mine = current(certs, config, state.mail, now) if state.mail else None
        for cert in sorted(certs, key=lambda c: c.not_after, reverse=True):
            if mine is not None and cert.serial == mine.serial:
                mark = "renewal due" if is_due(cert, config.days, now) else "current"
            elif cert.not_after <= now:
                mark = "expired"
            elif config.issuername.lower() not in cert.issuer.lower():
                mark = "other issuer"
            else:
                mark = "valid"
            lines.append(f"  serial     {cert.serial}  [{mark}]")
            lines.append(f"  subject    {cert.subject}  <{', '.join(cert.mails)}>")
            lines.append(f"  issuer     {cert.issuer}")
            lines.append(
                f"  validity   {cert.not_before:%Y-%m-%d %H:%M} .. {cert.not_after:%Y-%m-%d %H:%M} UTC, "
                f"{cert.days_left(now):.0f} days left"
            )
    return lines, code
