"""``autoenroll run``: what ExchangeEnroll.vbs did at every logon, step by step, each step in the log.

open the stores (31) -> a valid certificate from ``issuername`` for the user's mail with more than
``days`` left? then stop, without contacting anyone -> otherwise new key and CSR (33) -> one ``logon``
call: the server reads AD (the mail comes from there, 32 when there is none) and issues (34, 38) ->
install (39) -> report ``installed`` with the replaced serial, so the server revokes it. The first run
on a machine, which does not know the user's mail yet, syncs first; a server older than the agent gets
the three calls sync -> enroll -> status.

The user's mail (from the last answer) is remembered in a small state file, so that the quick check
needs no server; a status report that could not be delivered is remembered there too and sent at the
next run (the old certificate must not stay valid forever). Runs of one user wait for each other, so
two logons at once enroll once.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import math
import os
import re
import time
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autoenroll.protocol import CATALOGUE, EnrollmentError
from autoenroll.protocol import messages as msg

from .config import Config, ConfigError
from .log import RunLog
from .stores import Installed, Request, Store, open_stores
from .stores.base import days_left, local_date

if TYPE_CHECKING:
    from .client import EnrollmentClient

EXIT_OK = 0
EXIT_UNEXPECTED = 70  # EX_SOFTWARE: a bug; the log has the traceback's last line
EXIT_CONFIG = 78  # EX_CONFIG: autoenroll.conf unusable
NO_EMAIL = 32
#: The identity of a CSR made from the state file no longer matches AD (mail or CN changed): sync again.
IDENTITY_CHANGED = (18, 19)
BAD_REQUEST = 15  # the CSR or its key: an earlier key may have been revoked meanwhile
#: How long a run waits for another run of the same user (their own network timeouts end them sooner).
LOCK_WAIT_SECONDS = 180
#: How long the key of a request whose answer never arrived is sent again (then a new key is made).
RESEND_KEY_SECONDS = 7 * 24 * 3600
DAY = 24 * 3600  # between checks that the current certificate is not revoked
#: How far the server's clock may be ahead of this one: a certificate valid from a minute ago there is installed.
CLOCK_SKEW = datetime.timedelta(hours=1)


def state_path() -> Path:
    override = os.environ.get("AUTOENROLL_STATE")
    if override:
        return Path(override)
    import platformdirs

    return Path(platformdirs.user_state_dir("autoenroll", appauthor=False), "state.json")


@dataclass
class State:
    """What the agent remembers between logons: who the user is (from AD), an unsent status report, and
    the request in flight (its key is sent again if the answer never arrived)."""

    principal: str = ""
    mail: str = ""
    cn: str = ""
    unreported: dict[str, Any] | None = None
    in_flight: dict[str, Any] | None = None
    next_revocation_check: dict[str, Any] | None = None  # {"serial", "at": epoch seconds}
    path: Path = field(default_factory=state_path)

    @classmethod
    def load(cls, path: Path | None = None) -> State:
        path = path or state_path()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = None
        if not isinstance(data, dict):  # missing or damaged: the agent syncs first, as on a new machine
            return cls(path=path)
        cn = str(data.get("cn") or "")
        return cls(
            principal=str(data.get("principal", "")),
            mail=str(data.get("mail", "")) if cn else "",  # who the user is, whole or not at all: sync first
            cn=cn,
            unreported=_entry(data.get("unreported")),
            in_flight=_entry(data.get("in_flight"), "made", handle=dict),
            next_revocation_check=_entry(data.get("next_revocation_check"), "at"),
            path=path,
        )

    def save(self) -> None:
        data = {
            "principal": self.principal,
            "mail": self.mail,
            "cn": self.cn,
            "unreported": self.unreported,
            "in_flight": self.in_flight,
            "next_revocation_check": self.next_revocation_check,
        }
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}")
            tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError:
            pass  # only an optimisation: next time the agent syncs first


_MAIL = re.compile(r"[^@\s]{1,64}@[^@\s]{1,253}")


def _answer_text(answer: dict[str, Any], key: str) -> str:
    """A text field of the server's answer; 38 when it is not text a log, a CSR or a store can hold."""
    value = answer.get(key)
    if value is None:
        return ""
    # Control characters and lone surrogates only: "山田\u3000太郎" and names with a zero-width non-joiner are names
    usable = isinstance(value, str) and not any(unicodedata.category(c) in ("Cc", "Cs") for c in value)
    if not usable:
        raise EnrollmentError(38, f"{key} in the server's answer is not text: {value!r:.80}")
    return value


def _entry(value: Any, time_key: str = "", **types: type) -> dict[str, Any] | None:
    """An entry of the state file as the agent wrote it (a dict, its time a number, its `types`), else nothing."""
    if not isinstance(value, dict) or not value:
        return None
    if time_key and not (isinstance(value.get(time_key), int | float) and math.isfinite(value[time_key])):
        return None
    if any(not isinstance(value.get(key), kind) for key, kind in types.items()):
        return None
    return value


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
    """Guide 3.1: with days = 20 and expiry on 6/30, the new certificate is enrolled on 6/10, at any hour of
    6/10 whatever the hour of expiry (`days_left` counts calendar days)."""
    return cert is None or cert.days_left(now) <= days


@contextlib.contextmanager
def user_lock(state: Path, wait: float = LOCK_WAIT_SECONDS) -> Iterator[bool]:
    """Runs of one user, one at a time (two logons at once, a logon during a scheduled run): the second
    finds what the first installed. Yields whether the lock is held (False after `wait` seconds)."""
    try:
        import fcntl
    except ImportError:  # Windows: the logon script runs once per logon
        yield False
        return
    try:
        state.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(state.with_name(state.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        yield False
        return
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    yield False
                    return
                time.sleep(0.2)
        yield True
    finally:
        os.close(fd)


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
        self._three_calls = False  # the server is older than the agent: sync, enroll, status

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
        with user_lock(self.state.path) as locked:
            if not locked:
                self.log.warning("another run of this user did not finish in time; going on")
            self.state = State.load(self.state.path)  # what a run that held the lock may have learnt
            return self._enroll_if_due(stores)

    def _enroll_if_due(self, stores: list[Store]) -> int:
        config = self.config
        inventory = self._open(stores)
        mail = self.state.mail
        if mail and not self.force and not self.state.unreported:
            if self._nothing_due(stores, inventory, mail):
                return EXIT_OK
        client = self.client()
        if self.state.unreported:
            self._report_left_over()
        if not mail:  # the first run here: who the user is in AD decides what is due
            mail = self._sync(client)
            if not self.force and self._nothing_due(stores, inventory, mail):
                return EXIT_OK
        from .client import ServerRefusal

        primary = stores[0]
        try:
            request, answer = self._request(client, primary, mail)
        except ServerRefusal as exc:
            if exc.code not in IDENTITY_CHANGED:
                raise
            self.log.step(f"logon: Error {exc.code}: {exc.message} (AD changed since the last run): sync again")
            mail = self._sync(client)
            request, answer = self._request(client, primary, mail)
        mail = self.state.mail
        certificate, chain = self._certificate(answer, request, mail)
        serial = format(certificate.serial_number, "x")
        replaced = next((c for s in stores if (c := current(inventory[s.name], config, mail, self.now))), None)
        if replaced is not None and replaced.serial == serial:  # the same certificate again (its key resent)
            replaced = None
        installed_in = self._install(stores, request, certificate, chain)
        report = {"customeruri": config.customeruri, "status": msg.STATUS_INSTALLED, "serial": serial}
        if replaced is not None:
            report["replaced_serial"] = replaced.serial
        if answer.get("status_token"):
            report["status_token"] = answer["status_token"]
        self.state.unreported, self.state.in_flight = report, None
        self.state.next_revocation_check = {"serial": serial, "at": time.time() + DAY}
        self.state.save()
        self._report(report)
        if replaced is not None:
            for store in installed_in:
                for old in inventory[store.name]:
                    if old.serial == replaced.serial:
                        try:
                            store.supersede(old)
                        except (OSError, EnrollmentError) as exc:  # installed and reported: only tidying failed
                            self.log.warning(f"install: {old.serial} left in {store.name}: {exc}")
        days = days_left(certificate.not_valid_after_utc, self.now)
        self.log.step(f"done: certificate {serial} for {mail} installed, valid {days} days")
        return EXIT_OK

    def _open(self, stores: list[Store]) -> dict[str, list[Installed]]:
        inventory = {}
        for store in stores:
            inventory[store.name] = store.certificates()
            for problem in store.unreadable:
                self.log.warning(f"check: {store.name}: passed over {problem}")
        return inventory

    def _nothing_due(self, stores: list[Store], inventory: dict[str, list[Installed]], mail: str) -> bool:
        """True when every store holds a certificate that is not due (copying one between stores if needed)."""
        config = self.config
        first = current(inventory[stores[0].name], config, mail, self.now)
        if is_due(first, config.days, self.now):
            return False
        assert first is not None
        if self._revoked(stores[0], first):
            return False
        missing = [s for s in stores[1:] if not any(c.serial == first.serial for c in inventory[s.name])]
        if missing and not self._copy(stores[0], first, missing):
            return False
        self.log.step(
            f"check: certificate {first.serial} for {mail} from {first.issuer} valid until "
            f"{local_date(first.not_after)} ({first.days_left(self.now)} days left, renewal {config.days} days "
            "before): nothing to do"
        )
        return True

    def _revoked(self, store: Store, cert: Installed) -> bool:
        """Once a day, ask the CA's OCSP responder about the current certificate: revoked by an admin, or
        unknown to it (a server restored from a backup older than the certificate), enroll again. No answer
        decides nothing: the next try is in an hour."""
        due = self.state.next_revocation_check or {}
        if due.get("serial") == cert.serial and time.time() < float(due.get("at") or 0):
            return False  # the logon with nothing to do stays without cryptography or network
        from . import revocation

        try:
            verdict = revocation.check_installed(store, cert)
        except revocation.NoAnswer as exc:
            self.log.warning(f"check: revocation of {cert.serial} not checked: {exc}; again in an hour")
            self._next_revocation_check(cert, revocation.RETRY_AFTER)
            return False
        if verdict.revoked:
            when = f"{verdict.revoked_at:%Y-%m-%d %H:%M} UTC" if verdict.revoked_at else "at an unknown time"
            self.log.step(f"check: certificate {cert.serial} was revoked {when} ({verdict.reason}): enroll again")
            return True
        if verdict.unknown:
            self.log.step(
                f"check: certificate {cert.serial} is unknown to its CA's responder (a server restored from an "
                "older backup?): enroll again"
            )
            return True
        self._next_revocation_check(cert, DAY)
        return False

    def _next_revocation_check(self, cert: Installed, seconds: float) -> None:
        self.state.next_revocation_check = {"serial": cert.serial, "at": time.time() + seconds}
        self.state.save()

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
        return self._remember(client.sync(body, timeouts()[0]), said="sync")

    def _request(self, client: EnrollmentClient, primary: Store, mail: str) -> tuple[Request, dict[str, Any]]:
        """A key and CSR, and the server's answer: one ``logon`` call (sync, enroll and enroll's polling
        when older than the agent). The key is new, unless an earlier request's answer never arrived:
        then that key goes again, and the server answers the certificate it may have issued for it
        rather than a second one."""
        from .client import ServerRefusal

        config = self.config
        request = self._in_flight(primary, mail)
        if request is not None:
            try:
                return request, self._send(client, request, mail)
            except ServerRefusal as exc:
                if exc.code != BAD_REQUEST:
                    raise
                self.log.step(f"logon: Error {exc.code}: {exc.message} (the earlier key): a new key")
        request = primary.create_request(self.state.cn, mail, config.keytype)
        self.log.step(f"request: new {config.keytype} key in {primary.name}, CSR for CN={self.state.cn} <{mail}>")
        if request.handle:
            self.state.in_flight = {
                "store": primary.name,
                "handle": request.handle,
                "mail": mail,
                "cn": self.state.cn,
                "keytype": config.keytype,
                "made": time.time(),
            }
            self.state.save()
        return request, self._send(client, request, mail)

    def _in_flight(self, primary: Store, mail: str) -> Request | None:
        """The request of an earlier run that got no answer (connection lost, server down), if it
        still fits: same store, mail, CN and key type, made in the last RESEND_KEY_SECONDS."""
        sent = self.state.in_flight
        if not sent:
            return None
        same = (sent.get("store"), sent.get("mail"), sent.get("cn"), sent.get("keytype")) == (
            primary.name, mail, self.state.cn, self.config.keytype,
        )  # fmt: skip
        fresh = time.time() - float(sent.get("made") or 0) < RESEND_KEY_SECONDS
        request = primary.resume_request(sent.get("handle") or {}, self.state.cn, mail) if same and fresh else None
        if request is None:
            self.state.in_flight = None
            return None
        self.log.step(f"request: the answer to the last request never arrived: its key again, CSR for <{mail}>")
        return request

    def _send(self, client: EnrollmentClient, request: Request, mail: str) -> dict[str, Any]:
        from .client import NotOffered, timeouts

        config = self.config
        body: dict[str, Any] = {"customeruri": config.customeruri, "email": mail, "cn": self.state.cn}
        body["csr"] = request.csr_pem
        if config.orgid:
            body["orgid"] = config.orgid
        deadline = time.monotonic() + timeouts()[1]
        if not self._three_calls:
            try:
                answer = client.logon({**body, "domainname": config.domainname}, deadline)
            except NotOffered:
                self.log.step("logon: not offered by this server (older than the agent): sync, enroll, status")
                self._three_calls = True
            else:
                self._remember(answer)
                return answer
            self._sync(client)
        return client.enroll(body, deadline)

    def _remember(self, answer: dict[str, Any], *, said: str = "") -> str:
        """Who the server's answer says the user is in AD (the next quick check needs the mail): 32 when AD
        holds no mail, 38 for a name or mail that no request or certificate could carry."""
        principal, mail, cn = (_answer_text(answer, key) for key in ("principal", "email", "cn"))
        if said:
            self.log.step(f"{said}: {principal or '?'} has mail {mail or '(none)'} in AD, orgid {answer.get('orgid')}")
        if not mail:
            raise EnrollmentError(NO_EMAIL, principal)
        if not _MAIL.fullmatch(mail):
            raise EnrollmentError(38, f"the server's answer names the mail {mail[:100]!r}")
        self.state.principal, self.state.mail = principal, mail
        self.state.cn = cn or principal.partition("@")[0]
        self.state.save()
        return mail

    def _certificate(self, answer: dict[str, Any], request: Request, mail: str) -> tuple[Any, list[Any]]:
        """The answer's certificate, if it is one this agent would find at the next logon: for the key of
        the request and the user's mail, in force, from ``issuername``. Anything else is error 38 and
        nothing is installed, so the certificate in use stays (and is not reported replaced)."""
        from cryptography import x509
        from cryptography.exceptions import UnsupportedAlgorithm
        from cryptography.hazmat.primitives import serialization

        try:
            certificate = x509.load_pem_x509_certificate(str(answer["certificate"]).encode())
            chain_pem = answer.get("chain") or ""
            if not isinstance(chain_pem, str):
                raise ValueError("the chain is not PEM text")
            chain = x509.load_pem_x509_certificates(chain_pem.encode()) if chain_pem else []
            csr = x509.load_pem_x509_csr(request.csr_pem.encode())
            spki = serialization.PublicFormat.SubjectPublicKeyInfo
            der = serialization.Encoding.DER
            same_key = certificate.public_key().public_bytes(der, spki) == csr.public_key().public_bytes(der, spki)
            found = Installed(certificate, "answer", "")
        except (KeyError, ValueError, UnsupportedAlgorithm, x509.DuplicateExtension) as exc:
            raise EnrollmentError(38, f"unreadable certificate in the answer: {exc}") from None
        if not same_key:
            raise EnrollmentError(38, "the certificate does not certify the key of the request")
        if mail.lower() not in found.mails:
            raise EnrollmentError(38, f"the certificate is for {', '.join(found.mails) or 'no mail'}, not {mail}")
        if not found.not_before - CLOCK_SKEW <= self.now < found.not_after:
            raise EnrollmentError(38, f"the certificate is valid {found.not_before} to {found.not_after}, not now")
        if self.config.issuername.lower() not in found.issuer.lower():
            raise EnrollmentError(
                38, f"the certificate's issuer {found.issuer} does not match issuername {self.config.issuername!r}"
            )
        how = "logon" if not self._three_calls else f"enroll: request {answer.get('request_id')}"
        self.log.step(
            f"{how}: issued certificate {format(certificate.serial_number, 'x')} "
            f"by {certificate.issuer.rfc4514_string()}, valid until {local_date(certificate.not_valid_after_utc)}"
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
        """Tell the server the outcome: with the logon answer's status token (no Kerberos), else, or when
        the token is refused, with Kerberos. The same body serves both calls."""
        from .client import TokenRefused, timeouts

        client = self.client()
        if report.get("status_token") and not self._three_calls:
            try:
                answer = client.logon_status(report, timeouts()[0])
            except TokenRefused:
                self.log.step("status: the status token was refused; reporting with Kerberos")
                answer = client.status(report, timeouts()[0])
        else:
            answer = client.status(report, timeouts()[0])
        self.state.unreported = None
        self.state.save()
        revoked = answer.get("revoked_serial")
        self.log.step(
            f"status: reported {report['status']} {report.get('serial', '')}"
            + (f"; the server revoked the replaced certificate {revoked}" if revoked else "")
        )

    def _report_left_over(self) -> None:
        """A report an earlier run could not deliver. Refused by the server, it is dropped (and logged):
        sent again at every logon it would only be refused again."""
        from .client import ServerRefusal

        report = self.state.unreported
        assert report is not None
        try:
            self._report(report)
        except ServerRefusal as exc:
            self.log.warning(
                f"status: the server refused the report of certificate {report.get('serial')} from an earlier run "
                f"(Error {exc.code}: {exc.message}); not sending it again"
            )
            self.state.unreported = None
            self.state.save()


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
        lines += [f"  unreadable {problem}" for problem in store.unreadable]
        mine = current(certs, config, state.mail, now) if state.mail else None
        for cert in sorted(certs, key=lambda c: c.not_after, reverse=True):
            revocation_line = None
            if mine is not None and cert.serial == mine.serial:
                mark = "renewal due" if is_due(cert, config.days, now) else "current"
                revocation_line = _revocation_status(store, cert)
                if revocation_line.startswith("revoked"):
                    mark = "revoked"
                if revocation_line.endswith("the next run enrolls again"):  # not a day later: make it so
                    state.next_revocation_check = None
                    state.save()
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
                f"{cert.days_left(now)} days left"
            )
            if revocation_line:
                lines.append(f"  revocation {revocation_line}")
    return lines, code


def _revocation_status(store: Store, cert: Installed) -> str:
    """What the CA's OCSP responder says now of the current certificate, for `status`."""
    from . import revocation

    try:
        verdict = revocation.check_installed(store, cert)
    except revocation.NoAnswer as exc:
        return f"not checked: {exc}"
    if verdict.revoked:
        return f"revoked {verdict.revoked_at:%Y-%m-%d %H:%M} UTC ({verdict.reason}): the next run enrolls again"
    if verdict.unknown:
        return "unknown to the CA's responder: the next run enrolls again"
    return "good (OCSP, asked now)"
