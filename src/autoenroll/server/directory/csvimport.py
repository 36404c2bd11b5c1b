"""CSV import of AD servers (guide 2.3: "You can import your AD servers from CSV").

The columns are the labels of figure 2.14, so an admin can fill the file from the form they know; the
shorter names of figure 2.13's list ("AD Server", "Port") are read as the same columns, and its
informational columns (Organization/Department, Setup By Comodo) are ignored. Two more columns carry
what an LDAPS server needs to pass Verify: the DC's CA certificate (PEM, in a quoted cell) and the TLS
server name. Only the required columns must be there. Every row
is validated exactly as the edit form would (the model's own validation) before anything is saved; the save
is one transaction, so a file is imported whole, or with its invalid rows skipped when the admin says so.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass, field

from django.core.exceptions import ValidationError
from django.db import transaction

from autoenroll.server.directory.models import ADServer
from autoenroll.server.tenants.models import Customer

COLUMNS = (
    "Domain",
    "AD Server Address",
    "AD Server Port",
    "Set as Default",
    "Users Base DN",
    "Login User DN",
    "Login Password",
    "Use SSL",
    "DC CA Certificate",
    "TLS Server Name",
)
REQUIRED = ("Domain", "AD Server Address", "Users Base DN", "Login User DN", "Login Password")
#: Other names of a column (figure 2.13's list view, and the obvious variants), lower case.
ALIASES = {
    "ad server": "AD Server Address",
    "port": "AD Server Port",
    "default": "Set as Default",
    "login dn": "Login User DN",
    "password": "Login Password",
    "ssl": "Use SSL",
    "ca certificate": "DC CA Certificate",
    "tls ca": "DC CA Certificate",
    "server name": "TLS Server Name",
}
#: Figure 2.13's columns that describe a server the guide's system set up, not one to import.
IGNORED = {"organization/department", "setup by comodo"}
TRUE, FALSE = {"yes", "y", "true", "1", "x"}, {"no", "n", "false", "0", ""}
MAX_ROWS = 1000
LABELS = {  # model field -> column, to name the column in an error
    "domain": "Domain",
    "address": "AD Server Address",
    "port": "AD Server Port",
    "users_base_dn": "Users Base DN",
    "login_dn": "Login User DN",
    "login_password": "Login Password",
    "tls_ca_pem": "DC CA Certificate",
    "tls_server_name": "TLS Server Name",
}


class CSVError(ValueError):
    """The file as a whole is unusable (encoding, header)."""


@dataclass
class ImportRow:
    line: int
    shown: dict[str, str]  # the row as the preview shows it: the password masked
    server: ADServer | None = None
    errors: list[str] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return not self.errors


def _flag(value: str, column: str, errors: list[str]) -> bool:
    text = value.strip().lower()
    if text in TRUE:
        return True
    if text not in FALSE:
        errors.append(f"{column}: {value!r} is not Yes or No")
    return False


def decode(data: bytes) -> str:
    try:
        text = data.decode("utf-8-sig")  # Excel writes a BOM
    except UnicodeDecodeError:
        raise CSVError("The file is not UTF-8 text (save it from Excel as 'CSV UTF-8').") from None
    nul = text.find("\x00")  # no cell holds one (PostgreSQL refuses it, even in the validation's lookups)
    if nul >= 0:
        line = text.count("\n", 0, nul) + 1
        raise CSVError(f"line {line} holds a NUL character: not CSV text.")
    return text


def parse(text: str, customer: Customer) -> list[ImportRow]:
    """Read and validate every row; nothing is written."""
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader)
    except StopIteration:
        raise CSVError("The file is empty.") from None
    except csv.Error as exc:
        raise CSVError(f"line 1: {exc}") from None
    index = _columns(header)
    missing = [c for c in REQUIRED if c not in index]
    if missing:
        raise CSVError(
            f"The header lacks the column(s): {', '.join(missing)}. Columns: {', '.join(COLUMNS)} "
            "(the first five required; figure 2.13's AD Server and Port are read as AD Server Address and Port)."
        )
    rows: list[ImportRow] = []
    seen: dict[tuple[str, str], int] = {}
    try:
        for values in reader:
            line = reader.line_num
            if not any(v.strip() for v in values):
                continue
            if len(rows) >= MAX_ROWS:
                raise CSVError(f"More than {MAX_ROWS} rows.")
            cell = {c: (values[index[c]] if index.get(c, len(values)) < len(values) else "") for c in COLUMNS}
            rows.append(_row(line, cell, customer, seen))
    except csv.Error as exc:
        raise CSVError(f"line {reader.line_num}: {exc}") from None
    if not rows:
        raise CSVError("The file has a header but no rows.")
    defaults = [r for r in rows if r.server is not None and r.server.is_default]
    for extra in defaults[1:]:
        extra.errors.append(f"Set as Default: only one row may be the default (line {defaults[0].line} is)")
    return rows


def _columns(header: list[str]) -> dict[str, int]:
    """Column -> position, by name or alias, case-insensitively; an unknown column is an error (a typo
    would otherwise lose that column's values without a word)."""
    known = {c.lower(): c for c in COLUMNS} | ALIASES
    index: dict[str, int] = {}
    for position, name in enumerate(header):
        label = name.strip().lower()
        if label in IGNORED or not label:
            continue
        if label not in known:
            raise CSVError(f"Unknown column {name.strip()!r}. Columns: {', '.join(COLUMNS)}.")
        if known[label] in index:
            raise CSVError(f"The column {known[label]} appears twice.")
        index[known[label]] = position
    return index


def _row(line: int, cell: dict[str, str], customer: Customer, seen: dict[tuple[str, str], int]) -> ImportRow:
    errors: list[str] = [f"{c}: required" for c in REQUIRED if not cell[c].strip()]
    shown = {c: _shown(c, cell[c]) for c in COLUMNS}
    port_text = cell["AD Server Port"].strip() or "0"
    try:
        port = int(port_text)
    except ValueError:
        errors.append(f"AD Server Port: {port_text!r} is not a number")
        port = 0
    server = ADServer(
        customer=customer,
        domain=cell["Domain"].strip().lower(),
        address=cell["AD Server Address"].strip(),
        port=port,
        is_default=_flag(cell["Set as Default"], "Set as Default", errors),
        users_base_dn=cell["Users Base DN"].strip(),
        login_dn=cell["Login User DN"].strip(),
        login_password=cell["Login Password"],
        use_ssl=_flag(cell["Use SSL"], "Use SSL", errors),
        tls_ca_pem=cell["DC CA Certificate"].strip(),
        tls_server_name=cell["TLS Server Name"].strip(),
    )
    try:
        # is_default is left out: save() moves the default, the one-default constraint would refuse it here
        server.full_clean(exclude=["is_default"])
    except ValidationError as exc:
        for name, messages in exc.message_dict.items():
            label = LABELS.get(name, "")
            if label in REQUIRED and not cell[label].strip():
                continue  # already reported as required
            errors.extend(f"{label}: {m}" if label else m for m in messages)
    key = (server.domain, server.address.lower())
    if key in seen:
        errors.append(f"the same Domain and AD Server Address as line {seen[key]}")
    else:
        seen[key] = line
    return ImportRow(line, shown, server, errors)


def _shown(column: str, value: str) -> str:
    """The preview's cell: no password, and a certificate as its first line, not the whole PEM."""
    if column == "Login Password" and value:
        return "********"
    if column == "DC CA Certificate" and value.strip():
        return f"PEM, {value.count('BEGIN CERTIFICATE')} certificate(s)"
    return value.strip()


def save(rows: list[ImportRow], skip_invalid: bool, progress: Callable[[int], None] | None = None) -> int:
    """Save the valid rows in one transaction; refuses (saves nothing) when a row is invalid and not skipped.
    `progress(1)` is called after each saved row (the command line shows a progress bar)."""
    if not skip_invalid and any(not r.valid for r in rows):
        raise CSVError("Some rows are invalid; nothing was imported.")
    saved = 0
    with transaction.atomic():
        for row in rows:
            if row.valid:
                row.server.save()
                saved += 1
                if progress is not None:
                    progress(1)
    return saved
