"""What the enrollment hot path needs of the configuration, held in memory by each server process.

Realms, customers, email domains, organizations, AD servers and the issuing CA change only when an
admin edits them. They are read in one go per configuration generation (`tenants.generation`) and
then answered from memory: a logon costs one read of the generation instead of a dozen queries.
The rows held here are shared by every thread of the process: read them, never change or save them.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from functools import cached_property

from autoenroll.server.certificates import authority
from autoenroll.server.certificates.models import CertificateAuthority
from autoenroll.server.directory.models import ADServer
from autoenroll.server.kerberos.models import KerberosRealm
from autoenroll.server.tenants import generation
from autoenroll.server.tenants.models import Customer, EmailDomain, Organization

#: The models whose rows are held here: saving or deleting one bumps the generation.
WATCHED = (Customer, EmailDomain, Organization, ADServer, KerberosRealm, CertificateAuthority)


@dataclass(frozen=True)
class Configuration:
    generation: int
    realms: tuple[KerberosRealm, ...]
    customers: dict[str, Customer]  # by uri
    domains: dict[str, EmailDomain]  # by name (a domain belongs to one customer)
    organizations: dict[int, Organization]  # every organization, deleted ones too (their errors differ)
    organization_domains: dict[int, frozenset[str]]
    ad_servers: dict[int, tuple[ADServer, ...]]  # by customer id, in pk order
    issuing_ca: CertificateAuthority | None
    chain_pem: str = field(default="")

    def ad_server(self, pk: int | None) -> ADServer | None:
        return next((s for servers in self.ad_servers.values() for s in servers if s.pk == pk), None)

    def customer(self, pk: int) -> Customer | None:
        return self._customers_by_id.get(pk)

    @cached_property
    def _customers_by_id(self) -> dict[int, Customer]:
        return {c.pk: c for c in self.customers.values()}


def load(number: int) -> Configuration:
    """Every row the hot path needs, in seven queries."""
    customers = {c.pk: c for c in Customer.objects.all()}
    servers: dict[int, list[ADServer]] = {}
    for server in ADServer.objects.order_by("pk"):
        server.customer = customers[server.customer_id]
        servers.setdefault(server.customer_id, []).append(server)
    by_pk = {s.pk: s for group in servers.values() for s in group}
    organizations = {}
    for org in Organization.objects.order_by("pk"):
        org.customer = customers[org.customer_id]
        org.ad_server = by_pk.get(org.ad_server_id)
        organizations[org.pk] = org
    org_domains: dict[int, set[str]] = {pk: set() for pk in organizations}
    through = Organization.domains.through
    for org_id, name in through.objects.values_list("organization_id", "emaildomain__name"):
        org_domains[org_id].add(name)
    realms = tuple(KerberosRealm.objects.order_by("pk"))
    for realm in realms:
        realm.customer = customers.get(realm.customer_id)
    ca = CertificateAuthority.objects.filter(role=CertificateAuthority.Role.ISSUING, active=True).first()
    return Configuration(
        generation=number,
        realms=realms,
        customers={c.uri: c for c in customers.values()},
        domains={d.name: d for d in EmailDomain.objects.all()},
        organizations=organizations,
        organization_domains={pk: frozenset(names) for pk, names in org_domains.items()},
        ad_servers={pk: tuple(group) for pk, group in servers.items()},
        issuing_ca=ca,
        chain_pem=authority.chain_pem(ca) if ca else "",
    )


_held: Configuration | None = None
_lock = threading.Lock()


def current() -> Configuration:
    """The configuration of the current generation (one query per request; a reload after a change)."""
    global _held
    number = generation.current()
    held = _held
    if held is not None and held.generation == number:
        return held
    with _lock:
        if _held is None or _held.generation != number:
            _held = load(number)
        return _held


def forget() -> None:
    """Drop what this process holds (tests that change rows behind the signals' back)."""
    global _held
    _held = None


def watch() -> None:
    generation.watch(*WATCHED)
