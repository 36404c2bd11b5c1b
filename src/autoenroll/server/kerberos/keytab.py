"""Read MIT keytab files and check them; print the commands that make one (the successor of keytab.bat).

Why parse the file ourselves: the admin's first question after copying a keytab is "does it hold the right
principal with usable keys?", and answering it must not depend on klist being installed. The format is
small and documented (MIT krb5 doc/formats/keytab_file_format). Key material is skipped, never kept.
"""

from __future__ import annotations

import datetime
import os
import stat
import struct
from dataclasses import dataclass, field
from pathlib import Path

#: Kerberos encryption type numbers (RFC 3961/3962/4757/6803/8009) and MIT's names for them.
ENCTYPE_NAMES: dict[int, str] = {
    1: "des-cbc-crc",
    2: "des-cbc-md4",
    3: "des-cbc-md5",
    5: "des3-cbc-md5",
    7: "des3-cbc-sha1-old",
    16: "des3-cbc-sha1",
    17: "aes128-cts-hmac-sha1-96",
    18: "aes256-cts-hmac-sha1-96",
    19: "aes128-cts-hmac-sha256-128",
    20: "aes256-cts-hmac-sha384-192",
    23: "arcfour-hmac",
    24: "arcfour-hmac-exp",
    25: "camellia128-cts-cmac",
    26: "camellia256-cts-cmac",
}
#: Enctypes that current Windows (AES since 2008, RC4 disabled by the 2022+ hardening) and MIT accept.
STRONG_ENCTYPES = frozenset({17, 18, 19, 20, 25, 26})
DES_ENCTYPES = frozenset({1, 2, 3})
RC4_ENCTYPES = frozenset({23, 24})

# The guide's ktpass used these; they are the reason keytab.bat needs a successor.
_WEAK_FAMILY = {**dict.fromkeys(DES_ENCTYPES, "DES"), **dict.fromkeys(RC4_ENCTYPES, "RC4")}


class KeytabError(Exception):
    """The keytab is missing, unreadable or not a keytab (the message names the file and the problem)."""


@dataclass(frozen=True)
class KeytabEntry:
    """One key of a keytab, without the key itself."""

    principal: str
    name_type: int
    timestamp: datetime.datetime
    kvno: int
    enctype: int
    key_length: int

    @property
    def enctype_name(self) -> str:
        return ENCTYPE_NAMES.get(self.enctype, f"enctype-{self.enctype}")


@dataclass
class KeytabReport:
    """What `check_keytab` found: entries, then problems worth a warning and problems that are errors."""

    path: Path
    entries: list[KeytabEntry] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def principals(self) -> dict[str, list[KeytabEntry]]:
        """Entries grouped by principal, in file order."""
        grouped: dict[str, list[KeytabEntry]] = {}
        for entry in self.entries:
            grouped.setdefault(entry.principal, []).append(entry)
        return grouped


class _Reader:
    def __init__(self, data: bytes, start: int, end: int, little_endian: bool = False) -> None:
        self.data, self.pos, self.end = data, start, end
        self.prefix = "<" if little_endian else ">"

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > self.end:
            raise KeytabError(f"entry ends early at byte {self.pos}")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def uint(self, fmt: str) -> int:
        size = struct.calcsize(fmt)
        return struct.unpack(self.prefix + fmt, self.take(size))[0]

    def counted(self) -> bytes:
        return self.take(self.uint("H"))


def parse_keytab(data: bytes) -> list[KeytabEntry]:
    """Parse the bytes of an MIT/Heimdal/ktpass keytab (format 0x0501 or 0x0502); raise KeytabError if corrupt."""
    if len(data) < 2 or data[0] != 5 or data[1] not in (1, 2):
        raise KeytabError("not a keytab (the file does not start with 0x0501 or 0x0502)")
    version = data[1]
    little = version == 1 and struct.pack("=H", 1) == b"\x01\x00"  # v1 used the writer's native byte order
    prefix = "<" if little else ">"
    entries: list[KeytabEntry] = []
    pos = 2
    while pos < len(data):
        if pos + 4 > len(data):
            raise KeytabError(f"truncated entry header at byte {pos}")
        (size,) = struct.unpack(prefix + "i", data[pos : pos + 4])
        pos += 4
        if size == 0:  # MIT writes no terminator, but treats a zero size as the end
            break
        if size < 0:  # a hole left by a deleted entry
            if pos - size > len(data):
                raise KeytabError(f"hole at byte {pos - 4} runs past the end of the file")
            pos -= size
            continue
        if pos + size > len(data):
            raise KeytabError(f"entry at byte {pos - 4} claims {size} bytes, only {len(data) - pos} left")
        r = _Reader(data, pos, pos + size, little)
        try:
            count = r.uint("H") - (1 if version == 1 else 0)
            realm = r.counted().decode("utf-8")
            components = [r.counted().decode("utf-8") for _ in range(count)]
            name_type = r.uint("I") if version == 2 else 1
            timestamp = r.uint("I")
            kvno = r.uint("B")
            enctype = r.uint("H")
            key_length = len(r.counted())
            if r.end - r.pos >= 4:  # 32-bit kvno, written by MIT since 1.8 when the kvno exceeds 255
                kvno32 = r.uint("I")
                if kvno32:
                    kvno = kvno32
        except UnicodeDecodeError:
            raise KeytabError(f"entry at byte {pos - 4} has a principal that is not UTF-8") from None
        if count < 1 or not realm:
            raise KeytabError(f"entry at byte {pos - 4} has no principal name")
        entries.append(
            KeytabEntry(
                principal="/".join(components) + "@" + realm,
                name_type=name_type,
                timestamp=datetime.datetime.fromtimestamp(timestamp, datetime.UTC),
                kvno=kvno,
                enctype=enctype,
                key_length=key_length,
            )
        )
        pos += size
    return entries


def read_keytab(path: str | os.PathLike[str]) -> list[KeytabEntry]:
    """Read and parse a keytab file; KeytabError says missing, unreadable or corrupt."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise KeytabError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise KeytabError(f"{path}: is a directory") from None
    except OSError as exc:
        raise KeytabError(f"{path}: cannot read: {exc.strerror}") from None
    except (ValueError, UnicodeError):  # a NUL or a lone surrogate: no file can have that name
        raise KeytabError(f"{str(path)!r}: not a usable file name") from None
    try:
        return parse_keytab(data)
    except KeytabError as exc:
        raise KeytabError(f"{path}: {exc}") from None


def check_keytab(path: str | os.PathLike[str], principal: str | None = None) -> KeytabReport:
    """Check a keytab the way the server will use it; errors make it unusable, warnings make it weak or exposed."""
    path = Path(path)
    report = KeytabReport(path=path)
    try:
        report.entries = read_keytab(path)
    except KeytabError as exc:
        report.errors.append(str(exc))
        return report
    if not report.entries:
        report.errors.append(f"{path}: the keytab holds no keys")
        return report
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        report.warnings.append(
            f"{path}: mode {stat.S_IMODE(mode):04o} lets group/others read the service keys; run chmod 600 {path}"
        )
    for name, keys in report.principals().items():
        enctypes = {k.enctype for k in keys}
        if not enctypes & STRONG_ENCTYPES:
            families = sorted({_WEAK_FAMILY.get(e, ENCTYPE_NAMES.get(e, str(e))) for e in enctypes})
            report.warnings.append(
                f"{name} has only {'/'.join(families)} keys, which current Windows clients no longer use; "
                "allow AES on the account (msDS-SupportedEncryptionTypes=24) and export the keytab again"
            )
    if principal is not None and principal not in report.principals():
        report.errors.append(f"{path}: no key for {principal}")
    return report


def setup_commands(host: str, realm: str, account: str, out: str = "ccm.keytab") -> str:
    """The guide's ktpass/setspn steps (2.1) with AES instead of DES, plus the Samba equivalents.

    Why AES and not the guide's `-crypto DES-CBC-MD5 +desonly`: Windows disabled DES by default in 2008 R2
    and RC4 is being retired; a keytab with only those keys makes every client fail.
    """
    host = host.strip().lower().rstrip(".")
    realm = realm.strip().upper()
    short = host.split(".", 1)[0]
    spns = [f"HTTP/{host}"] + ([f"HTTP/{short}"] if short != host else [])
    base_dn = ",".join(f"DC={part}" for part in realm.lower().split("."))
    lines = [
        f"# Keytab for the autoenroll server {host} in {realm}, service account {account!r}.",
        "# Run ONE of the two blocks on a domain controller as a domain administrator.",
        "# ktpass/exportkeytab write the service keys: copy the file to the server over a safe channel,",
        "# make it readable by the server only (chmod 600) and delete the copy on the DC.",
        "",
        "# --- Windows Server (cmd.exe) -------------------------------------------------------------",
        "# Allow AES on the account (PowerShell; same as ticking 'supports Kerberos AES 256 bit'):",
        f"#   Set-ADUser {account} -KerberosEncryptionType AES128,AES256",
        "# setspn -S refuses an SPN that another account already holds (a duplicate SPN breaks Kerberos).",
        *(f"setspn -S {spn} {account}" for spn in spns),
        "# ktpass maps the principal to the account and RESETS its password (-pass * prompts for it).",
        f"ktpass -princ {spns[0]}@{realm} -mapuser {account} -crypto AES256-SHA1 -ptype KRB5_NT_PRINCIPAL "
        f"-pass * -out {out}",
        f"setspn -L {account}",
        "",
        "# --- Samba AD DC (shell, as root on the DC) ------------------------------------------------",
        *(f"samba-tool spn add {spn} {account}" for spn in spns),
        "# Without AES enabled on the account Samba exports RC4-only keys (ldbmodify: Debian package ldb-tools;",
        "# adjust the DN if the account is not in CN=Users):",
        "ldbmodify -H /var/lib/samba/private/sam.ldb <<'EOF'",
        f"dn: CN={account},CN=Users,{base_dn}",
        "changetype: modify",
        "replace: msDS-SupportedEncryptionTypes",
        "msDS-SupportedEncryptionTypes: 24",
        "EOF",
        *(f"samba-tool domain exportkeytab {out} --principal={spn}" for spn in spns),
        f"chmod 600 {out}",
        "",
        "# --- then, on the autoenroll server --------------------------------------------------------",
        f"autoenroll-server keytab check {out} --principal {spns[0]}@{realm}",
        f"autoenroll-server realms add --domain {realm.lower()} --keytab /ABSOLUTE/PATH/{Path(out).name} "
        f"--principal {spns[0]}@{realm}",
    ]
    return "\n".join(lines) + "\n"
