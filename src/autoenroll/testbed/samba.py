"""A real, throw-away Samba AD DC (realm TEST.COM) on a loopback address.

Why: the server's Kerberos/SPNEGO login and its LDAP attribute look-ups must be tested against a real
Active Directory implementation, not mocks. Provisioning and populating take ~5 s, so a populated, *stopped* DC is kept
as a template in a cache dir and every session clones it (``cp -a``, well under a second) and starts
``samba`` on the clone.

Needs root (Samba AD provisioning chowns sysvol and binds ports < 1024), the Debian packages ``samba``,
``samba-ad-provision``, ``samba-dsdb-modules``, ``krb5-user`` and Debian's ``/usr/bin/python3`` with the
Samba bindings (used as a subprocess: the bindings are not importable from a virtualenv).
This module must not import Django or ``autoenroll.server``.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import hashlib
import ipaddress
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# --------------------------------------------------------------------------------------------------------
# The directory content every test can rely on
# --------------------------------------------------------------------------------------------------------

REALM = "TEST.COM"
DOMAIN = "test.com"
NETBIOS = "TEST"
DC_HOSTNAME = "dc1"
DC_FQDN = "dc1.test.com"
BASE_DN = "DC=test,DC=com"
USERS_DN = f"CN=Users,{BASE_DN}"
ADMIN_USER = "Administrator"
ADMIN_PASSWORD = "Passw0rd!Admin"  # noqa: S105 - throw-away test realm
SERVICE_ACCOUNT = "ccm"
SERVICE_ACCOUNT_PASSWORD = "Passw0rd!Ccm1"  # noqa: S105 - throw-away test realm
SERVICE_ACCOUNT_DN = f"CN={SERVICE_ACCOUNT},{USERS_DN}"
SERVICE_SPNS = ("HTTP/ccm.test.com", "HTTP/ccm")
#: Principals exported into the keytab: the HTTP acceptor names plus ``ccm`` itself (usable with kinit -k).
KEYTAB_PRINCIPALS = ("HTTP/ccm.test.com", "HTTP/ccm", SERVICE_ACCOUNT)
#: AES128 | AES256; without it Samba exports an RC4-only keytab for the SPNs.
AES_ENCTYPES = 24
UF_ACCOUNTDISABLE = 0x2
UF_NORMAL_ACCOUNT = 0x200

DEFAULT_CACHE = Path("/var/tmp/autoenroll-testbed")  # noqa: S108 - owner/mode checked in _safe_cache
#: Bump when anything about how the template is built changes (part of the template's cache key).
RECIPE_VERSION = "1"


@dataclass(frozen=True)
class TestUser:
    """A user present in every clone of the test directory."""

    __test__ = False  # not a pytest test class

    sam: str
    password: str
    mail: str | None = None
    given_name: str | None = None
    surname: str | None = None
    cn: str | None = None
    proxy_addresses: tuple[str, ...] = ()
    disabled: bool = False

    @property
    def principal(self) -> str:
        """Kerberos principal name, as an acceptor reports it."""
        return f"{self.sam}@{REALM}"

    @property
    def dn(self) -> str:
        """Distinguished name (Samba uses the cn, which defaults to the sAMAccountName)."""
        return f"CN={self.cn or self.sam},{USERS_DN}"


USERS: dict[str, TestUser] = {
    u.sam: u
    for u in (
        TestUser(
            "user1",
            "Passw0rd!U1xx",
            mail="user1@test.com",
            given_name="User",
            surname="One",
            cn="User One",
            proxy_addresses=("SMTP:user1@test.com", "smtp:u1.alias@test.com"),
        ),
        TestUser("user2", "Passw0rd!U2xx", mail="user2@test.com"),
        TestUser("user3", "Passw0rd!U3xx"),  # no mail
        TestUser("user4", "Passw0rd!U4xx", mail="user4@test.com", disabled=True),
    )
}

_PORTS = (88, 389, 636)
_SAMBA_PYTHON = "/usr/bin/python3"  # Debian's interpreter: the only one with the samba/ldb bindings
_NEVER = str(-0x8000000000000000)  # AD "never" for maxPwdAge

# Lines put at the top of [global]; @DC_DIR@ / @DC_IP@ are filled in for each clone so the template
# does not depend on where it lives or which loopback address it serves.
_GLOBAL_OVERRIDES = """\
\tinterfaces = @DC_IP@
\tbind interfaces only = yes
\tpid directory = @DC_DIR@/run
\tncalrpc dir = @DC_DIR@/run/ncalrpc
\twinbindd socket directory = @DC_DIR@/run/winbindd
\tntp signd socket directory = @DC_DIR@/run/ntp_signd
\tlog file = @DC_DIR@/log/log.%m
\tserver services = ldap, kdc
\tldap server require strong auth = allow_sasl_over_tls
\ttls enabled = yes
\ttls keyfile = @DC_DIR@/private/tls/key.pem
\ttls certfile = @DC_DIR@/private/tls/cert.pem
\ttls cafile = @DC_DIR@/private/tls/ca.pem
\tldb:nosync = true
"""
# Generated [global] options that the overrides replace.
_DROPPED_OPTIONS = {
    "interfaces",
    "bind interfaces only",
    "server services",
    "log file",
    "pid directory",
    "ncalrpc dir",
    "winbindd socket directory",
    "ntp signd socket directory",
}

# Runs under /usr/bin/python3 (samba bindings) on the offline sam.ldb: one process instead of ~13
# samba-tool calls (each ~0.3 s of start-up). Reads a JSON spec on stdin.
_CONTENT_SCRIPT = r"""
import json, sys
import ldb, samba
from samba.auth import system_session
from samba.param import LoadParm
from samba.samdb import SamDB

spec = json.load(sys.stdin)
lp = LoadParm()
lp.load(spec["smb_conf"])
db = SamDB(url=lp.private_path("sam.ldb"), session_info=system_session(), lp=lp)
domain_dn = db.domain_dn()

def replace(dn, attrs):
    m = ldb.Message()
    m.dn = ldb.Dn(db, str(dn))
    for k, v in attrs.items():
        vals = [str(x) for x in v] if isinstance(v, list) else [str(v)]
        m[k] = ldb.MessageElement(vals, ldb.FLAG_MOD_REPLACE, k)
    db.modify(m)

replace(domain_dn, spec["domain_policy"])
for u in spec["users"]:
    flt = "(sAMAccountName=%s)" % ldb.binary_encode(u["sam"])
    db.newuser(u["sam"], u["password"], useusernameascn=None, givenname=u["given_name"],
               surname=u["surname"], mailaddress=u["mail"])
    dn = db.search(base=domain_dn, scope=ldb.SCOPE_SUBTREE, expression=flt, attrs=[])[0].dn
    if u["attrs"]:
        replace(dn, u["attrs"])
    if u["no_expiry"]:
        db.setexpiry(flt, 0, no_expiry_req=True)
    if u["disabled"]:
        db.disable_account(flt)
    print("created", dn)

samba.enable_net_export_keytab()
from samba.net import Net
net = Net(None, lp)
for principal in spec["keytab_principals"]:
    net.export_keytab(keytab=spec["keytab"], principal=principal)
print("keytab", spec["keytab"])
"""


class TestbedError(RuntimeError):
    """The Samba test bed could not be built, started or used (message says why)."""

    __test__ = False


# --------------------------------------------------------------------------------------------------------
# Environment checks
# --------------------------------------------------------------------------------------------------------


def _tool(name: str) -> str | None:
    """Find a binary even when /usr/sbin is not on PATH (non-login root shells, CI)."""
    found = shutil.which(name)
    if found:
        return found
    for d in ("/usr/sbin", "/usr/bin", "/sbin", "/bin"):
        p = Path(d, name)
        if p.is_file() and os.access(p, os.X_OK):
            return str(p)
    return None


def _require_tool(name: str) -> str:
    path = _tool(name)
    if path is None:
        raise TestbedError(f"{name!r} not found (install the samba / krb5-user packages)")
    return path


def available() -> tuple[bool, str]:
    """Whether this machine can run the test bed, and if not, why (for pytest.skip / CI failures)."""
    if os.geteuid() != 0:
        return False, "the Samba AD DC test bed needs root (provisioning chowns sysvol, binds ports < 1024)"
    missing = [t for t in ("samba", "samba-tool", "samba_spnupdate", "kinit", "klist", "ip") if not _tool(t)]
    if missing:
        return False, (
            f"missing {', '.join(missing)}: apt-get install samba samba-ad-provision samba-dsdb-modules "
            "krb5-user iproute2"
        )
    if not Path(_SAMBA_PYTHON).is_file():
        return False, f"{_SAMBA_PYTHON} (Debian python with the samba bindings) is missing"
    return True, ""


def _run(cmd: list[str], *, timeout: float = 120, input_text: str | None = None, **kw: Any) -> str:
    """Run a helper command; on failure raise with its output so the cause is visible in test logs."""
    shown = " ".join(c if len(c) < 200 else c[:40] + "..." for c in cmd)
    try:
        proc = subprocess.run(cmd, input=input_text, capture_output=True, text=True, timeout=timeout, check=False, **kw)
    except subprocess.TimeoutExpired as e:
        raise TestbedError(f"timed out after {timeout}s: {shown}") from e
    if proc.returncode != 0:
        raise TestbedError(f"command failed ({proc.returncode}): {shown}\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    return proc.stdout


# --------------------------------------------------------------------------------------------------------
# TLS: our own small CA, because Samba's self-signed cert has no SAN and a negative serial
# --------------------------------------------------------------------------------------------------------


def _write_private(path: Path, data: bytes) -> None:
    """Write a secret with mode 0600 from the start (Samba refuses TLS keys readable by others)."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _make_ca(tls_dir: Path) -> None:
    """Create the test CA (once per template, so every clone's LDAPS cert chains to the same CA)."""
    tls_dir.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "autoenroll test bed"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"{REALM} test DC CA"),
        ]
    )
    now = datetime.datetime.now(datetime.UTC)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_private(tls_dir / "ca-key.pem", _key_pem(key))
    (tls_dir / "ca.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _make_server_cert(tls_dir: Path, ip: str) -> None:
    """Issue the DC's LDAPS cert for this clone: SAN covers dc1.test.com and the IP clients connect to."""
    ca_key = serialization.load_pem_private_key((tls_dir / "ca-key.pem").read_bytes(), password=None)
    ca_cert = x509.load_pem_x509_certificate((tls_dir / "ca.pem").read_bytes())
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"DC1.{DOMAIN}")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())  # positive, random
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=True,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName(DC_FQDN),
                    x509.DNSName(f"DC1.{DOMAIN}"),
                    x509.IPAddress(ipaddress.ip_address(ip)),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    _write_private(tls_dir / "key.pem", _key_pem(key))
    (tls_dir / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))


# --------------------------------------------------------------------------------------------------------
# Template: provisioned + populated, stopped DC, IP- and location-independent
# --------------------------------------------------------------------------------------------------------


def _samba_version() -> str:
    return _run([_require_tool("samba"), "--version"], timeout=30).strip()


def _content_spec(smb_conf: Path, keytab: Path) -> dict[str, Any]:
    users: list[dict[str, Any]] = [
        {
            "sam": SERVICE_ACCOUNT,
            "password": SERVICE_ACCOUNT_PASSWORD,
            "given_name": None,
            "surname": None,
            "mail": None,
            "attrs": {
                "servicePrincipalName": list(SERVICE_SPNS),
                "msDS-SupportedEncryptionTypes": str(AES_ENCTYPES),
            },
            "no_expiry": True,
            "disabled": False,
        }
    ]
    for u in USERS.values():
        attrs: dict[str, Any] = {}
        if u.proxy_addresses:
            attrs["proxyAddresses"] = list(u.proxy_addresses)
        users.append(
            {
                "sam": u.sam,
                "password": u.password,
                "given_name": u.given_name,
                "surname": u.surname,
                "mail": u.mail,
                "attrs": attrs,
                "no_expiry": False,
                "disabled": u.disabled,
            }
        )
    return {
        "smb_conf": str(smb_conf),
        "keytab": str(keytab),
        "keytab_principals": list(KEYTAB_PRINCIPALS),
        # relaxed policy: no complexity, no history, passwords never expire (no expiry warnings in kinit)
        "domain_policy": {
            "pwdProperties": "0",
            "pwdHistoryLength": "0",
            "minPwdLength": "0",
            "minPwdAge": "0",
            "maxPwdAge": _NEVER,
        },
        "users": users,
    }


def _template_key() -> str:
    h = hashlib.sha256()
    for part in (
        RECIPE_VERSION,
        _samba_version(),
        _GLOBAL_OVERRIDES,
        _CONTENT_SCRIPT,
        json.dumps(_content_spec(Path("/"), Path("/")), sort_keys=True),
        ADMIN_PASSWORD,
    ):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def cache_dir() -> Path:
    """Where templates live: ``$AUTOENROLL_TESTBED_CACHE`` or /var/tmp/autoenroll-testbed."""
    env = os.environ.get("AUTOENROLL_TESTBED_CACHE")
    return Path(env) if env else DEFAULT_CACHE


def _safe_cache(cache: Path) -> Path:
    """Create the cache dir 0700 and refuse one another user could have planted (it is under /var/tmp)."""
    cache.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = cache.lstat()
    if cache.is_symlink() or st.st_uid != os.geteuid() or st.st_mode & 0o022:
        raise TestbedError(f"refusing cache dir {cache}: must be a directory owned by us, not group/world-writable")
    return cache


def _templatize_smb_conf(generated: str, dc_dir: Path) -> str:
    """Turn the provisioned smb.conf into a template with @DC_DIR@/@DC_IP@ placeholders."""
    out: list[str] = []
    section = ""
    for line in generated.splitlines():
        stripped = line.strip()
        if stripped.startswith("[") and stripped.endswith("]"):
            section = stripped.lower()
            out.append(line)
            if section == "[global]":
                out.extend(_GLOBAL_OVERRIDES.rstrip("\n").split("\n"))
            continue
        if section == "[global]" and "=" in stripped:
            option = stripped.split("=", 1)[0].strip().lower()
            if option in _DROPPED_OPTIONS:
                continue
        out.append(line)
    text = "\n".join(out) + "\n"
    return text.replace(str(dc_dir), "@DC_DIR@")


def _render_smb_conf(dc_dir: Path, ip: str) -> Path:
    template = (dc_dir / "etc" / "smb.conf.in").read_text()
    conf = dc_dir / "etc" / "smb.conf"
    conf.write_text(template.replace("@DC_DIR@", str(dc_dir)).replace("@DC_IP@", ip))
    return conf


def _build_template(build: Path) -> None:
    """Provision and populate a DC in ``build`` (the slow part, ~5 s; done once per cache key)."""
    dc = build / "dc"
    empty_krb5_conf = build / "krb5.conf.empty"  # don't let a host /etc/krb5.conf influence provisioning
    empty_krb5_conf.write_text("")
    env = {**os.environ, "KRB5_CONFIG": str(empty_krb5_conf)}
    _run(
        [
            _require_tool("samba-tool"),
            "domain",
            "provision",
            f"--targetdir={dc}",
            f"--realm={REALM}",
            f"--domain={NETBIOS}",
            "--server-role=dc",
            "--dns-backend=NONE",
            f"--adminpass={ADMIN_PASSWORD}",
            f"--host-name={DC_HOSTNAME}",
            "--host-ip=127.0.0.1",
            "--option=interfaces=127.0.0.1",
            "--option=bind interfaces only=yes",
            "-q",
        ],
        timeout=300,
        env=env,
    )
    for sub in ("run", "log"):
        (dc / sub).mkdir(exist_ok=True)
    generated = (dc / "etc" / "smb.conf").read_text()
    (dc / "etc" / "smb.conf.in").write_text(_templatize_smb_conf(generated, dc))
    conf = _render_smb_conf(dc, "127.0.0.1")
    _make_ca(dc / "private" / "tls")

    keytab = build / "ccm.keytab"
    spec = _content_spec(conf, keytab)
    _run([_SAMBA_PYTHON, "-c", _CONTENT_SCRIPT], input_text=json.dumps(spec), timeout=300, env=env)
    # registers ldap/dc1.test.com etc. on DC1$ (normally the 'dnsupdate' service does it) -> GSSAPI LDAP binds
    _run([_require_tool("samba_spnupdate"), "-s", str(conf)], timeout=120, env=env)
    # the rendered conf names the build dir; clones render their own
    conf.unlink()
    for pid_file in (dc / "run").glob("*.pid"):
        pid_file.unlink()
    leftovers = [
        str(p.relative_to(dc))
        for p in dc.rglob("*")
        if p.is_file() and p.stat().st_size < 10_000_000 and str(build).encode() in p.read_bytes()
    ]
    if leftovers:
        raise TestbedError(f"template still contains the build path in {leftovers}; cloning would break")
    empty_krb5_conf.unlink()
    (build / "READY").write_text(_samba_version() + "\n")


@contextlib.contextmanager
def _file_lock(path: Path, timeout: float):
    """Exclusive lock between processes (pytest-xdist workers, demo + tests), bounded wait."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TestbedError(f"could not lock {path} within {timeout}s (another build hung?)") from None
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def ensure_template(cache: Path | None = None, *, timeout: float = 600) -> Path:
    """Return the template dir for the current recipe, building it first if needed (atomic, locked)."""
    ok, reason = available()
    if not ok:
        raise TestbedError(reason)
    cache = _safe_cache(cache or cache_dir())
    key = _template_key()
    final = cache / f"template-{key}"
    if (final / "READY").is_file():
        return final
    with _file_lock(cache / f"template-{key}.lock", timeout):
        if (final / "READY").is_file():  # built by another process while we waited
            return final
        for stale in cache.glob(f".build-{key}-*"):  # crashed earlier builds; we hold the lock
            shutil.rmtree(stale, ignore_errors=True)
        if final.exists():  # incomplete (should not happen thanks to the rename) -> rebuild
            shutil.rmtree(final)
        build = Path(tempfile.mkdtemp(prefix=f".build-{key}-", dir=cache))
        try:
            _build_template(build)
            os.rename(build, final)
        except BaseException:
            shutil.rmtree(build, ignore_errors=True)
            raise
    return final


# --------------------------------------------------------------------------------------------------------
# Running DC
# --------------------------------------------------------------------------------------------------------


def _port_open(ip: str, port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((ip, port), timeout=timeout):
            return True
    except OSError:
        return False


def _ip_on_lo(ip: str) -> bool:
    out = _run([_require_tool("ip"), "-o", "addr", "show", "dev", "lo"], timeout=10)
    return any(part.split("/")[0] == ip for line in out.splitlines() for part in line.split())


def _tail(path: Path, n: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return f"({path} unreadable)"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie is gone for our purposes
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _pid_is_our_samba(pid: int, workdir: Path) -> bool:
    """Only ever signal the samba we started: a samba binary whose cwd is our workdir.

    (samba rewrites its argv/environ with setproctitle, so the command line cannot be used.)
    """
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
        cwd = os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return False
    return Path(exe).name == "samba" and Path(cwd) == workdir


def _krb5_conf(ip: str) -> str:
    return f"""[libdefaults]
    default_realm = {REALM}
    dns_lookup_realm = false
    dns_lookup_kdc = false
    rdns = false
    dns_canonicalize_hostname = false
    udp_preference_limit = 0
[realms]
    {REALM} = {{
        kdc = {ip}:88
        admin_server = {ip}:749
        kpasswd_server = {ip}:464
    }}
[domain_realm]
    .{DOMAIN} = {REALM}
    {DOMAIN} = {REALM}
    ccm = {REALM}
"""


@dataclass
class SambaDC:
    """A running clone of the template: where its files are and how to talk to it."""

    workdir: Path
    ip: str
    pid: int
    realm: str = REALM
    domain: str = DOMAIN
    base_dn: str = BASE_DN
    users_dn: str = USERS_DN
    service_account: str = SERVICE_ACCOUNT
    service_account_dn: str = SERVICE_ACCOUNT_DN
    service_account_password: str = SERVICE_ACCOUNT_PASSWORD
    admin_password: str = ADMIN_PASSWORD
    added_ip: bool = False
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False, compare=False)
    _stopped: bool = field(default=False, repr=False, compare=False)
    _admin_conn: Any = field(default=None, repr=False, compare=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)
    _passwords: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    # ---- paths ------------------------------------------------------------------------------------------
    @property
    def dc_dir(self) -> Path:
        """The samba state dir (private/, etc/smb.conf, log/)."""
        return self.workdir / "dc"

    @property
    def smb_conf(self) -> Path:
        return self.dc_dir / "etc" / "smb.conf"

    @property
    def krb5_conf(self) -> Path:
        """Client krb5.conf: realm TEST.COM with the KDC at this DC's IP, no DNS."""
        return self.workdir / "krb5.conf"

    @property
    def keytab(self) -> Path:
        """AES keytab for HTTP/ccm.test.com, HTTP/ccm and ccm (mode 0600)."""
        return self.workdir / "ccm.keytab"

    @property
    def tls_ca(self) -> Path:
        """PEM of the CA that signed the DC's LDAPS certificate (pin it in LDAP clients)."""
        return self.workdir / "tls-ca.pem"

    @property
    def log_file(self) -> Path:
        return self.dc_dir / "log" / "samba.stdout"

    @property
    def ldap_url(self) -> str:
        return f"ldaps://{self.ip}:636"

    # ---- Kerberos ----------------------------------------------------------------------------------------
    def env(self, ccache: str | None = None) -> dict[str, str]:
        """Variables that point MIT Kerberos at this realm; merge into os.environ or a subprocess env."""
        return {
            "KRB5_CONFIG": str(self.krb5_conf),
            "KRB5CCNAME": ccache or f"FILE:{self.workdir / 'cc' / 'default'}",
            "KRB5RCACHEDIR": str(self.workdir / "rcache"),
        }

    def password_of(self, user: str) -> str:
        """Known password of a template user, an added user, ccm or Administrator."""
        if user in self._passwords:
            return self._passwords[user]
        if user in USERS:
            return USERS[user].password
        if user == SERVICE_ACCOUNT:
            return SERVICE_ACCOUNT_PASSWORD
        if user.lower() == ADMIN_USER.lower():
            return ADMIN_PASSWORD
        raise TestbedError(f"no known password for {user!r}; pass one")

    def kinit(self, user: str, password: str | None = None) -> str:
        """Get a TGT for ``user`` into its own FILE: ccache under workdir and return the ccache name."""
        sam = user.split("@", 1)[0]
        if password is None:
            password = self.password_of(sam)
        cc_dir = self.workdir / "cc"
        cc_dir.mkdir(mode=0o700, exist_ok=True)
        ccache = f"FILE:{cc_dir / sam}"
        try:
            proc = subprocess.run(
                [_require_tool("kinit"), f"{sam}@{REALM}"],
                input=password + "\n",  # MIT kinit reads the password from stdin when it is not a tty
                capture_output=True,
                text=True,
                timeout=30,
                env={**os.environ, **self.env(ccache)},
                check=False,
            )
        except subprocess.TimeoutExpired as e:
            raise TestbedError(f"kinit {sam}@{REALM} timed out") from e
        if proc.returncode != 0:
            raise TestbedError(f"kinit {sam}@{REALM} failed: {proc.stderr.strip() or proc.stdout.strip()}")
        return ccache

    # ---- LDAP --------------------------------------------------------------------------------------------
    def ldap_connect(self, user: str, password: str) -> Any:
        """Simple bind over LDAPS with the test CA pinned (Samba refuses simple binds without TLS)."""
        import ldap3

        tls = ldap3.Tls(
            validate=ssl.CERT_REQUIRED,
            ca_certs_file=str(self.tls_ca),
            version=ssl.PROTOCOL_TLS_CLIENT,
            valid_names=[DC_FQDN],
        )
        server = ldap3.Server(self.ip, port=636, use_ssl=True, tls=tls, get_info=ldap3.NONE, connect_timeout=10)
        conn = ldap3.Connection(server, user=user, password=password, authentication=ldap3.SIMPLE, receive_timeout=60)
        if not conn.bind():
            raise TestbedError(f"LDAPS bind as {user} failed: {conn.result}")
        return conn

    def ldap_admin(self) -> Any:
        """A new ldap3 Connection bound as Administrator over LDAPS (caller unbinds it)."""
        return self.ldap_connect(f"{ADMIN_USER}@{DOMAIN}", ADMIN_PASSWORD)

    def _admin(self) -> Any:
        """Shared admin connection for the helper methods (re-opened if it dropped)."""
        if self._admin_conn is None or self._admin_conn.closed:
            self._admin_conn = self.ldap_admin()
        return self._admin_conn

    def _check(self, conn: Any, ok: bool, what: str) -> None:
        if not ok:
            raise TestbedError(f"{what} failed: {conn.result.get('description')} {conn.result.get('message')!r}")

    def user_dn(self, sam: str) -> str:
        """DN of the account with this sAMAccountName."""
        import ldap3
        from ldap3.utils.conv import escape_filter_chars

        with self._lock:
            conn = self._admin()
            conn.search(
                self.base_dn,
                f"(sAMAccountName={escape_filter_chars(sam)})",
                ldap3.SUBTREE,
                attributes=["userAccountControl"],
            )
            if not conn.entries:
                raise TestbedError(f"no account {sam!r} in {self.base_dn}")
            return str(conn.entries[0].entry_dn)

    def add_user(
        self,
        sam: str,
        password: str,
        mail: str | None = None,
        cn: str | None = None,
        disabled: bool = False,
        **attributes: str | list[str],
    ) -> str:
        """Create a user through LDAPS (one add incl. password; ~1,000/min is easy) and return its DN.

        Extra LDAP attributes can be passed as keywords, e.g. ``givenName="Ann"``.
        """
        from ldap3.utils.dn import escape_rdn

        dn = f"CN={escape_rdn(cn or sam)},{self.users_dn}"
        attrs: dict[str, Any] = {
            "objectClass": ["top", "person", "organizationalPerson", "user"],
            "sAMAccountName": sam,
            "userPrincipalName": f"{sam}@{self.domain}",
            "unicodePwd": f'"{password}"'.encode("utf-16-le"),
            "userAccountControl": str(UF_NORMAL_ACCOUNT | (UF_ACCOUNTDISABLE if disabled else 0)),
        }
        if mail:
            attrs["mail"] = mail
        attrs.update(attributes)
        with self._lock:
            conn = self._admin()
            self._check(conn, conn.add(dn, attributes=attrs), f"adding {dn}")
        self._passwords[sam] = password
        return dn

    def set_attribute(self, sam: str, attr: str, values: str | list[str] | None) -> None:
        """Replace an attribute of an account (None or [] deletes it)."""
        import ldap3

        dn = self.user_dn(sam)
        if values is None:
            values = []
        elif isinstance(values, str | bytes):
            values = [values]
        with self._lock:
            conn = self._admin()
            ok = conn.modify(dn, {attr: [(ldap3.MODIFY_REPLACE, list(values))]})
            self._check(conn, ok, f"setting {attr} on {dn}")

    def disable_user(self, sam: str) -> None:
        """Set ACCOUNTDISABLE (the KDC then answers 'credentials have been revoked')."""
        self._set_uac_bits(sam, UF_ACCOUNTDISABLE, on=True)

    def enable_user(self, sam: str) -> None:
        """Clear ACCOUNTDISABLE."""
        self._set_uac_bits(sam, UF_ACCOUNTDISABLE, on=False)

    def _set_uac_bits(self, sam: str, bits: int, on: bool) -> None:
        import ldap3
        from ldap3.utils.conv import escape_filter_chars

        with self._lock:
            conn = self._admin()
            conn.search(
                self.base_dn,
                f"(sAMAccountName={escape_filter_chars(sam)})",
                ldap3.SUBTREE,
                attributes=["userAccountControl"],
            )
            if not conn.entries:
                raise TestbedError(f"no account {sam!r}")
            entry = conn.entries[0]
            uac = int(entry.userAccountControl.value)
            uac = uac | bits if on else uac & ~bits
            ok = conn.modify(entry.entry_dn, {"userAccountControl": [(ldap3.MODIFY_REPLACE, [str(uac)])]})
            self._check(conn, ok, f"updating userAccountControl of {sam}")

    # ---- lifecycle ---------------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return not self._stopped and _pid_alive(self.pid)

    @contextlib.contextmanager
    def frozen(self) -> Iterator[None]:
        """The DC hangs (SIGSTOP to its whole session): the kernel still accepts connections, nothing
        answers. SIGCONT when the block ends."""
        os.killpg(self.pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.killpg(self.pid, signal.SIGCONT)

    def stop(self, timeout: float = 15) -> None:
        """Stop our samba (SIGTERM, bounded wait, then SIGKILL) and undo the loopback address. Idempotent."""
        if self._stopped:
            return
        with self._lock:
            if self._admin_conn is not None:
                with contextlib.suppress(Exception):
                    self._admin_conn.unbind()
                self._admin_conn = None
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.send_signal(signal.SIGTERM)
                try:
                    self._proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait(10)
        elif _pid_is_our_samba(self.pid, self.workdir):
            os.kill(self.pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while _pid_alive(self.pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _pid_alive(self.pid) and _pid_is_our_samba(self.pid, self.workdir):
                os.kill(self.pid, signal.SIGKILL)
        if self.added_ip:
            with contextlib.suppress(TestbedError):
                _run([_require_tool("ip"), "addr", "del", f"{self.ip}/8", "dev", "lo"], timeout=10)
        self._stopped = True
        (self.workdir / "samba.pid").unlink(missing_ok=True)

    def __enter__(self) -> SambaDC:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _save_state(self) -> None:
        state = {"ip": self.ip, "pid": self.pid, "added_ip": self.added_ip}
        (self.workdir / "testbed.json").write_text(json.dumps(state) + "\n")
        (self.workdir / "samba.pid").write_text(f"{self.pid}\n")


def _clone(template: Path, workdir: Path, ip: str) -> None:
    dc = workdir / "dc"
    if dc.exists():
        raise TestbedError(f"{dc} already exists; use an empty workdir")
    # cp -a keeps the xattrs/ACLs Samba set on sysvol and private/ (shutil.copytree would not)
    _run(["cp", "-a", str(template / "dc"), str(dc)], timeout=120)
    _render_smb_conf(dc, ip)
    for pid_file in (dc / "run").glob("*.pid"):
        pid_file.unlink()
    _make_server_cert(dc / "private" / "tls", ip)
    shutil.copyfile(dc / "private" / "tls" / "ca.pem", workdir / "tls-ca.pem")
    keytab = workdir / "ccm.keytab"
    shutil.copyfile(template / "ccm.keytab", keytab)
    keytab.chmod(0o600)
    (workdir / "krb5.conf").write_text(_krb5_conf(ip))
    (workdir / "cc").mkdir(mode=0o700, exist_ok=True)
    (workdir / "rcache").mkdir(mode=0o700, exist_ok=True)


def start(
    workdir: Path,
    ip: str = "127.0.0.1",
    *,
    timeout: float = 60,
    max_runtime: int = 3600,
    cache: Path | None = None,
) -> SambaDC:
    """Clone the template into ``workdir`` and start samba on ``ip``; returns once 88/389/636 answer.

    ``max_runtime`` makes samba exit by itself if whoever started it dies without stopping it.
    """
    workdir = Path(workdir).resolve()
    addr = ipaddress.ip_address(ip)
    if not (addr.version == 4 and addr.is_loopback):
        raise TestbedError(f"{ip} is not an IPv4 loopback address; the test bed only uses 127.0.0.0/8")
    template = ensure_template(cache)
    workdir.mkdir(parents=True, exist_ok=True)
    busy = [p for p in _PORTS if _port_open(ip, p)]
    if busy:
        raise TestbedError(f"ports {busy} on {ip} are already in use (another DC running there?)")

    added_ip = False
    if not _ip_on_lo(ip):
        _run([_require_tool("ip"), "addr", "add", f"{ip}/8", "dev", "lo"], timeout=10)
        added_ip = True
    try:
        _clone(template, workdir, ip)
        dc_dir = workdir / "dc"
        log = dc_dir / "log" / "samba.stdout"
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                [
                    _require_tool("samba"),
                    "-s",
                    str(dc_dir / "etc" / "smb.conf"),
                    "-i",
                    "-M",
                    "single",
                    "--no-process-group",
                    f"--maximum-runtime={max_runtime}",
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=workdir,
                start_new_session=True,  # survives the CLI's exit and the terminal's SIGHUP/SIGINT
            )
    except BaseException:
        if added_ip:
            with contextlib.suppress(TestbedError):
                _run([_require_tool("ip"), "addr", "del", f"{ip}/8", "dev", "lo"], timeout=10)
        raise
    dc = SambaDC(workdir=workdir, ip=ip, pid=proc.pid, added_ip=added_ip, _proc=proc)
    try:
        deadline = time.monotonic() + timeout
        todo = set(_PORTS)
        while todo:
            if proc.poll() is not None:
                raise TestbedError(f"samba exited with {proc.returncode} during start-up; log tail:\n{_tail(log)}")
            if time.monotonic() > deadline:
                raise TestbedError(
                    f"samba did not open ports {sorted(todo)} on {ip} within {timeout}s; log tail:\n{_tail(log)}"
                )
            todo = {p for p in todo if not _port_open(ip, p)}
            if todo:
                time.sleep(0.05)
        dc._save_state()
    except BaseException:
        dc.stop()
        raise
    return dc


def attach(workdir: Path) -> SambaDC:
    """Re-open a DC started by another process (``python -m autoenroll.testbed up``), e.g. to stop it."""
    workdir = Path(workdir).resolve()
    try:
        state = json.loads((workdir / "testbed.json").read_text())
    except (OSError, ValueError) as e:
        raise TestbedError(f"{workdir} holds no running test bed ({e})") from e
    # stop() re-checks /proc/PID/cmdline before signalling, so a recycled PID is never killed
    return SambaDC(workdir=workdir, ip=state["ip"], pid=int(state["pid"]), added_ip=bool(state["added_ip"]))


__all__ = [
    "ADMIN_PASSWORD",
    "BASE_DN",
    "DC_FQDN",
    "DOMAIN",
    "NETBIOS",
    "REALM",
    "SERVICE_ACCOUNT",
    "SERVICE_ACCOUNT_DN",
    "SERVICE_ACCOUNT_PASSWORD",
    "SERVICE_SPNS",
    "USERS",
    "USERS_DN",
    "SambaDC",
    "TestUser",
    "TestbedError",
    "attach",
    "available",
    "cache_dir",
    "ensure_template",
    "start",
]
