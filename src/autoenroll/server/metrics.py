"""`GET /metrics`: the server's health in the Prometheus text format, for the monitoring a company already has.

Two kinds of figures:

* what happens, counted where it happens (enrollment steps by outcome and guide error number, their latency,
  certificates issued and revoked, AD servers answering or not). Under `serve` every server worker and the
  CRL watcher writes them to prometheus-client's multiprocess files in the data directory
  (`PROMETHEUS_MULTIPROC_DIR`, set by `startup.prepare_metrics` before anything imports prometheus-client), and
  a scrape sums them;
* what is stored, read from the database at scrape time (certificates per customer: valid, expiring within
  30 days, revoked; CA and OCSP responder certificate expiry; CRL age): every node of a cluster reports the
  same, and a restart loses nothing.

Behind a bearer token (`metrics_token` in the configuration); without one, `/metrics` is off (404).
"""

from __future__ import annotations

import datetime as dt
import hmac
import os
from collections.abc import Iterator

from django.conf import settings
from django.db.models import Count, Max, Q
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.http import require_safe
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

#: A certificate counts as expiring this long before its notAfter (the first expiry notice).
EXPIRING_WITHIN = dt.timedelta(days=30)

ENROLLMENT_STEPS = Counter(
    "autoenroll_enrollment_steps",
    "Enrollment steps (logon, sync, enroll, status, revoke) by outcome and the guide's error number ('' on success).",
    ["step", "outcome", "error"],
)
ENROLLMENT_CALL_SECONDS = Histogram(
    "autoenroll_enrollment_call_seconds",
    "Server time of an enrollment call (logon, logon_status, sync, enroll, poll, status), from the checks to the "
    "answer: LDAP, CSR checks, signature, commit; Kerberos and HTTP excluded.",
    ["call"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
CERTIFICATES_ISSUED = Counter("autoenroll_certificates_issued", "Certificates issued, by profile.", ["profile"])
CERTIFICATES_REVOKED = Counter("autoenroll_certificates_revoked", "Certificates revoked, by reason.", ["reason"])
AD_SERVER_UP = Gauge(
    "autoenroll_ad_server_up",
    "1 when the AD server answered the last request made to it, 0 when it did not (DNS, TCP, TLS, timeout).",
    ["server"],
    multiprocess_mode="mostrecent",
)


def count_step(step: str, error_code: int | None = None, *, outcome: str | None = None) -> None:
    """One enrollment step recorded: a success, a refusal with the guide's number, or `outcome` (pending)."""
    outcome = outcome or ("error" if error_code else "success")
    ENROLLMENT_STEPS.labels(step, outcome, str(error_code or "")).inc()


class StoredState(Collector):
    """The figures the database holds, read at each scrape (a few aggregate queries)."""

    def collect(self) -> Iterator[Metric]:
        from autoenroll.server.certificates.models import Certificate, CertificateAuthority, RevocationList

        now = timezone.now()
        per_customer = GaugeMetricFamily(
            "autoenroll_certificates",
            "S/MIME certificates by customer and state: valid, expiring (valid, within 30 days of notAfter), "
            "revoked (and not yet expired).",
            labels=["customer", "state"],
        )
        valid = Q(status=Certificate.Status.ISSUED, not_before__lte=now, not_after__gt=now)
        rows = (
            Certificate.objects.filter(profile=Certificate.Profile.SMIME, not_after__gt=now)
            .values("person__customer__uri")
            .annotate(
                valid=Count("pk", filter=valid),
                expiring=Count("pk", filter=valid & Q(not_after__lte=now + EXPIRING_WITHIN)),
                revoked=Count("pk", filter=Q(status=Certificate.Status.REVOKED)),
            )
            .order_by()
        )
        for row in rows:
            customer = row["person__customer__uri"] or ""
            for state in ("valid", "expiring", "revoked"):
                per_customer.add_metric([customer, state], row[state])
        yield per_customer

        ca_expiry = GaugeMetricFamily(
            "autoenroll_ca_not_after_seconds", "notAfter of each CA certificate (Unix time).", labels=["ca", "role"]
        )
        responder_expiry = GaugeMetricFamily(
            "autoenroll_ocsp_responder_not_after_seconds",
            "notAfter of the newest OCSP responder certificate of each CA (Unix time).",
            labels=["ca"],
        )
        crl_age = GaugeMetricFamily(
            "autoenroll_crl_age_seconds", "Seconds since the thisUpdate of each CA's latest CRL.", labels=["ca"]
        )
        crl_next = GaugeMetricFamily(
            "autoenroll_crl_next_update_seconds", "nextUpdate of each CA's latest CRL (Unix time).", labels=["ca"]
        )
        responders = dict(
            Certificate.objects.filter(profile=Certificate.Profile.OCSP_RESPONDER, status=Certificate.Status.ISSUED)
            .values("ca_id")
            .annotate(last=Max("not_after"))
            .values_list("ca_id", "last")
        )
        for ca in CertificateAuthority.objects.order_by("pk"):
            ca_expiry.add_metric([ca.name, ca.role], ca.not_after.timestamp())
            if ca.pk in responders:
                responder_expiry.add_metric([ca.name], responders[ca.pk].timestamp())
            crl = (
                RevocationList.objects.filter(ca=ca, partition=None)
                .order_by("-number")
                .only("this_update", "next_update")
                .first()
            )
            if crl is not None:
                crl_age.add_metric([ca.name], (now - crl.this_update).total_seconds())
                crl_next.add_metric([ca.name], crl.next_update.timestamp())
        yield from (ca_expiry, responder_expiry, crl_age, crl_next)


def ad_servers_seen() -> dict[str, bool]:
    """ "address:port" of each AD server this server asked since it started, and whether it answered last."""
    seen: dict[str, bool] = {}
    for family in _counted().collect():
        if family.name == "autoenroll_ad_server_up":
            for sample in family.samples:
                seen[sample.labels["server"]] = sample.value == 1
    return seen


def _counted() -> CollectorRegistry:
    """What the processes counted: every process's files under `serve`, this process's own elsewhere."""
    counted = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(counted)
    else:
        for collector in (ENROLLMENT_STEPS, ENROLLMENT_CALL_SECONDS, CERTIFICATES_ISSUED, CERTIFICATES_REVOKED,
                          AD_SERVER_UP):  # fmt: skip
            counted.register(collector)
    return counted


def registry() -> CollectorRegistry:
    """What one scrape reports: what the processes counted and the stored state."""
    scrape = _counted()
    scrape.register(StoredState())
    return scrape


@require_safe
def metrics_view(request: HttpRequest) -> HttpResponse:
    token = settings.CONFIG.metrics_token_value()
    if not token:
        return HttpResponse("metrics are off: set metrics_token in the configuration\n", status=404,
                            content_type="text/plain; charset=utf-8")  # fmt: skip
    given = request.headers.get("Authorization", "")
    if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        return HttpResponse("a bearer token is required\n", status=401, content_type="text/plain; charset=utf-8",
                            headers={"WWW-Authenticate": 'Bearer realm="metrics"'})  # fmt: skip
    return HttpResponse(generate_latest(registry()), content_type=CONTENT_TYPE_LATEST,
                        headers={"Cache-Control": "no-store"})  # fmt: skip
