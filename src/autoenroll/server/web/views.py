"""The admin pages. Most are declarations on the generic views; the few actions (Verify, import, revoke,
approve) are short views that still take their object from the restricted queryset."""

from __future__ import annotations

import logging
from datetime import timedelta

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model, update_session_auth_hash
from django.core.exceptions import PermissionDenied
from django.db.models import Count, F, OuterRef, Subquery, Value
from django.db.models.functions import Coalesce, TruncDate
from django.http import HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.views.decorators.debug import sensitive_post_parameters
from django.views.generic import DetailView, TemplateView, View

from autoenroll.protocol import CATALOGUE, EnrollmentError
from autoenroll.server import metrics
from autoenroll.server.audit import trail
from autoenroll.server.audit.models import AuditRecord
from autoenroll.server.certificates import authority
from autoenroll.server.certificates.models import Certificate
from autoenroll.server.directory import csvimport
from autoenroll.server.directory.ldap import DirectoryClient, DirectoryError
from autoenroll.server.directory.models import ADServer, Person
from autoenroll.server.enrollment import lifecycle
from autoenroll.server.enrollment.models import EnrollmentEvent, EnrollmentRequest
from autoenroll.server.kerberos import loginconf, spnego
from autoenroll.server.kerberos.keytab import check_keytab
from autoenroll.server.kerberos.models import KerberosRealm
from autoenroll.server.kerberos.services import import_entries
from autoenroll.server.notices.models import ExpiryNotice
from autoenroll.server.notices.notify import expiring
from autoenroll.server.tenants.models import Customer, EmailDomain, Organization
from autoenroll.server.utils.fields import cipher
from autoenroll.server.utils.restrict import restrict_administrators, restricted

from . import charts, forms, tables
from .generic import ObjectDeleteView, ObjectEditView, ObjectListView, RestrictedMixin

log = logging.getLogger("autoenroll.web")
sensitive = method_decorator(sensitive_post_parameters("login_password", "password"), name="dispatch")
sensitive_passwords = method_decorator(
    sensitive_post_parameters("password1", "password2", "new_password1", "new_password2"), name="dispatch"
)

# --- Dashboard ---------------------------------------------------------------------------------------------------


class DashboardView(RestrictedMixin, TemplateView):
    """Certificates issued per day, soon expiring, and the most frequent errors (of what the user may see)."""

    template_name = "web/dashboard.html"
    model = Certificate
    nav = "dashboard"
    days = 30

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        user, now = self.request.user, timezone.now()
        certs = restricted(Certificate, user).filter(profile=Certificate.Profile.SMIME)
        first = (now - timedelta(days=self.days - 1)).date()
        per_day = dict(
            certs.filter(created__date__gte=first)
            .annotate(day=TruncDate("created"))
            .values_list("day")
            .annotate(n=Count("pk"))
            .values_list("day", "n")
        )
        certificates, log = reverse("web:certificate_list"), reverse("web:event_list")
        issued = [
            charts.Bar(f"{d:%m-%d}", per_day.get(d, 0), f"{certificates}?issued_on={d:%Y-%m-%d}")
            for d in (first + timedelta(days=i) for i in range(self.days))
        ]
        valid = certs.valid(now)
        expiring = [
            charts.Bar(
                f"≤ {n} days",
                valid.filter(not_after__lte=now + timedelta(days=n)).count(),
                f"{certificates}?status=issued&expires_within={n}",
            )  # fmt: skip
            for n in (30, 15, 2)
        ]
        errors = [
            charts.Bar(f"{code}: {CATALOGUE[code].message}", n, f"{log}?code={code}&outcome=error")
            for code, n in restricted(EnrollmentEvent, user)
            .filter(outcome=EnrollmentEvent.Outcome.ERROR, created__gte=now - timedelta(days=self.days))
            .values_list("error_code")
            .annotate(n=Count("pk"))
            .order_by("-n", "error_code")[:10]
        ]
        context.update(
            charts=[
                (
                    "Certificates issued per day (last 30 days)",
                    charts.bar_chart("Certificates issued per day", issued),
                    issued,
                    "" if any(b.value for b in issued) else "No certificate was issued in the last 30 days.",
                ),
                (
                    "Certificates expiring",
                    charts.bar_chart("Certificates expiring", expiring, height=180),
                    expiring,
                    "" if any(b.value for b in expiring) else "No valid certificate expires within 30 days.",
                ),
                (
                    "Most frequent errors (last 30 days)",
                    charts.hbar_chart("Most frequent errors", errors),
                    errors,
                    "" if errors else "No error in the last 30 days.",
                ),
            ],
            pending=restricted(EnrollmentRequest, user).filter(status=EnrollmentRequest.Status.PENDING).count(),
            totals=self._totals(user, certs, valid, now),
            ad_servers=self._ad_health(user),
        )
        return context

    @staticmethod
    def _ad_health(user) -> list[tuple[ADServer, bool | None]]:
        """Each AD server the user sees, and whether it answered the last request this server made to it
        (None: not asked since the server started); the same figure as /metrics' autoenroll_ad_server_up."""
        seen = metrics.ad_servers_seen()
        return [(s, seen.get(f"{s.address}:{s.effective_port}")) for s in restricted(ADServer, user).order_by("pk")]

    @staticmethod
    def _totals(user, certs, valid, now) -> list[tuple[str, int, str]]:
        """(label, count, the list it links to): the figures an admin checks first."""
        log, certificates = reverse("web:event_list"), reverse("web:certificate_list")
        today = timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0)
        return [
            ("Persons", restricted(Person, user).count(), reverse("web:person_list")),
            ("Valid certificates", valid.count(), f"{certificates}?status=issued"),
            ("Expiring within 30 days", valid.filter(not_after__lte=now + timedelta(days=30)).count(),
             f"{certificates}?expires_within=30"),
            ("Not renewed, expiring", expiring(now, timedelta(days=settings.CONFIG.expiry_notice_days[0]))
             .filter(pk__in=certs.values("pk")).count(), reverse("web:expiring_list")),
            ("Revoked", certs.filter(status=Certificate.Status.REVOKED).count(), f"{certificates}?status=revoked"),
            ("Errors today", restricted(EnrollmentEvent, user).filter(
                outcome=EnrollmentEvent.Outcome.ERROR, created__gte=today).count(), f"{log}?outcome=error"),
        ]  # fmt: skip


# --- Settings / Autoenrollment: Kerberos realms (Super Admin, guide 2.2) -----------------------------------------


class RealmMixin:
    model = KerberosRealm
    super_admin_only = True
    nav = "realms"
    list_url = "realm_list"

    def after_save(self, obj=None) -> None:
        """SPNEGO reads the realms from the database on each request; dropping cached credentials makes a
        changed keytab path count at once too: Save applies without a restart."""
        spnego.clear_caches()

    after_delete = after_save


class RealmListView(RealmMixin, ObjectListView):
    table = tables.RealmTable
    title = "Settings / Autoenrollment"
    add_url = "realm_add"
    actions_template = "web/realm_actions.html"
    queryset = KerberosRealm.objects.select_related("customer")


class RealmEditView(RealmMixin, ObjectEditView):
    form_class = forms.RealmForm

    def get_form_kwargs(self):  # a plain ModelForm: the page is Super Admin only
        kwargs = super().get_form_kwargs()
        kwargs.pop("user")
        return kwargs


class RealmDeleteView(RealmMixin, ObjectDeleteView):
    pass


class RealmCheckView(RealmMixin, RestrictedMixin, View):
    """The keytab check of `autoenroll-server keytab check`, for one realm: its keys (principal, kvno,
    enctypes), and what would make the server refuse tickets (errors) or weaken it (warnings)."""

    def get(self, request, pk):
        realm = get_object_or_404(self.get_queryset(), pk=pk)
        report = check_keytab(realm.keytab_path, realm.service_principal)
        return render(request, "web/realm_check.html", {"realm": realm, "report": report, "nav": self.nav})


def _login_conf(user) -> str:
    return loginconf.render(loginconf.entries_from_realms(restricted(KerberosRealm, user)))


class LoginConfView(RealmMixin, RestrictedMixin, TemplateView):
    """The realms as the CCM login.conf they are equivalent to (guide 6.1)."""

    template_name = "web/loginconf.html"

    def get_context_data(self, **kwargs):
        return super().get_context_data(text=_login_conf(self.request.user), **kwargs)


class LoginConfDownloadView(RealmMixin, RestrictedMixin, View):
    def get(self, request):
        response = HttpResponse(_login_conf(request.user), content_type="text/plain; charset=utf-8")
        response["Content-Disposition"] = 'attachment; filename="login.conf"'
        return response


class LoginConfImportView(RealmMixin, RestrictedMixin, TemplateView):
    """Import a CCM login.conf: every entry or none (the same rules as `autoenroll-server realms import`)."""

    template_name = "web/loginconf_import.html"

    def get(self, request):
        return self.render_to_response(self.get_context_data(form=forms.LoginConfImportForm()))

    def post(self, request):
        form = forms.LoginConfImportForm(request.POST, request.FILES)
        if form.is_valid():
            try:
                report = import_entries(loginconf.parse(form.cleaned_data["text"]), form.cleaned_data["customer"])
            except loginconf.LoginConfError as exc:
                form.add_error(None, f"login.conf {exc} (nothing imported)")
            else:
                self.after_save()
                for line in report:
                    messages.success(request, line)
                return HttpResponseRedirect(reverse("web:realm_list"))
        return self.render_to_response(self.get_context_data(form=form))


# --- Settings / AD Server (guide 2.3, figures 2.13-2.14) ---------------------------------------------------------


class ADServerMixin:
    model = ADServer
    nav = "adservers"
    list_url = "adserver_list"


class ADServerListView(ADServerMixin, ObjectListView):
    table = tables.ADServerTable
    title = "Settings / AD Server"
    add_url = "adserver_add"
    actions_template = "web/adserver_actions.html"
    queryset = ADServer.objects.select_related("customer").prefetch_related("organizations")


@sensitive
class ADServerEditView(ADServerMixin, ObjectEditView):
    form_class = forms.ADServerForm


class ADServerDeleteView(ADServerMixin, ObjectDeleteView):
    pass


STAGE_REASONS = {
    "dns": "DNS: the AD Server Address cannot be resolved to an IP address.",
    "address": "Address: the AD Server Address is outside the networks this server may reach AD servers in "
    "(its setting AUTOENROLL_AD_NETWORKS).",
    "tcp": "TCP: no connection to the AD Server Address and Port (DC down, wrong port, or a firewall).",
    "tls": "TLS: the TLS handshake failed (SSL not enabled on the DC, a plain port with Use SSL, or the DC's "
    "certificate is not trusted or does not name the server).",
    "bind": "Bind: the DC refused the Login User DN and Login Password.",
    "base_dn": "Base DN: the Users Base DN does not exist in the directory.",
    "search": "Search: the DC refused to search the Users Base DN.",
}


class ADServerVerifyView(ADServerMixin, RestrictedMixin, View):
    """Verify (guide 2.3): connect, bind, search the users base DN; round-trip time and clock skew, or why not.

    A POST: it makes the server bind to the DC, and a forged cross-site link must not be able to do that
    (repeated binds with a wrong password could lock the service account)."""

    def post(self, request, pk):
        server = get_object_or_404(self.get_queryset(), pk=pk)
        client = DirectoryClient(server.ldap_settings())  # a fresh connection: a kept one would prove nothing
        context = {"server": server, "nav": self.nav}
        try:
            context["report"] = client.verify()
        except DirectoryError as exc:
            context.update(stage=exc.stage, reason=STAGE_REASONS.get(exc.stage, exc.stage), detail=str(exc))
            log.info("verify AD server %s (%s): failed at %s", server.pk, server.address, exc.stage)
        else:
            log.info("verify AD server %s (%s): ok", server.pk, server.address)
        finally:
            client.close()
        return render(request, "web/adserver_verify.html", context, status=200)


@sensitive
class ADServerImportView(ADServerMixin, RestrictedMixin, View):
    """CSV import with a preview. The uploaded text waits in the session, encrypted (it holds passwords), so the
    confirming POST needs no second upload and the passwords never travel back to the browser."""

    session_key = "web.adserver_import"

    def get(self, request):
        return self.page(forms.ADServerImportForm(user=request.user))

    def page(self, form, rows=None, customer=None, error=""):
        return render(
            self.request,
            "web/adserver_import.html",
            {
                "form": form,
                "rows": rows,
                "customer": customer,
                "columns": csvimport.COLUMNS,
                "invalid": sum(1 for r in rows or () if not r.valid),
                "error": error,
                "nav": self.nav,
            },
        )

    def post(self, request):
        if "confirm" in request.POST:
            return self.confirm(request)
        form = forms.ADServerImportForm(request.POST, request.FILES, user=request.user)
        if not form.is_valid():
            return self.page(form)
        customer = form.cleaned_data["customer"]
        try:
            text = csvimport.decode(form.cleaned_data["file"].read(2_000_000))
            rows = csvimport.parse(text, customer)
        except csvimport.CSVError as exc:
            return self.page(form, error=str(exc))
        request.session[self.session_key] = {  # encrypted with the AD passwords' at-rest key
            "customer": customer.pk,
            "csv": cipher().encrypt(text.encode()).decode("ascii"),
        }
        return self.page(form, rows, customer)

    def confirm(self, request):
        stored = request.session.get(self.session_key)
        customer = restricted(Customer, request.user).filter(pk=(stored or {}).get("customer")).first()
        if not stored or customer is None:
            messages.error(request, "Nothing to import: upload the file again.")
            return HttpResponseRedirect(reverse("web:adserver_import"))
        text = cipher().decrypt(stored["csv"].encode("ascii")).decode()
        rows = csvimport.parse(text, customer)  # again: the database may have changed since the preview
        try:
            saved = csvimport.save(rows, skip_invalid=request.POST.get("skip_invalid") == "on")
        except csvimport.CSVError as exc:
            return self.page(forms.ADServerImportForm(user=request.user), rows, customer, error=str(exc))
        del request.session[self.session_key]
        skipped = sum(1 for r in rows if not r.valid)
        messages.success(
            request, f"{saved} AD server(s) imported" + (f", {skipped} row(s) skipped." if skipped else ".")
        )
        return HttpResponseRedirect(reverse("web:adserver_list"))


# --- Settings / Organizations and Domains (figure 2.15) -----------------------------------------------------------


class OrganizationMixin:
    model = Organization
    nav = "organizations"
    list_url = "organization_list"


class OrganizationListView(OrganizationMixin, ObjectListView):
    table = tables.OrganizationTable
    title = "Settings / Organizations"
    add_url = "organization_add"
    queryset = Organization.objects.select_related("customer", "ad_server").prefetch_related("domains")


class OrganizationEditView(OrganizationMixin, ObjectEditView):
    form_class = forms.OrganizationForm


class OrganizationDeleteView(OrganizationMixin, ObjectDeleteView):
    pass


class DomainMixin:
    model = EmailDomain
    nav = "domains"
    list_url = "domain_list"


class DomainListView(DomainMixin, ObjectListView):
    table = tables.DomainTable
    title = "Settings / Domains"
    add_url = "domain_add"
    queryset = EmailDomain.objects.select_related("customer").prefetch_related("organizations")


class DomainEditView(DomainMixin, ObjectEditView):
    form_class = forms.DomainForm


class DomainDeleteView(DomainMixin, ObjectDeleteView):
    pass


# --- Customers (Super Admin) ---------------------------------------------------------------------------------------


class CustomerMixin:
    model = Customer
    nav = "customers"
    list_url = "customer_list"
    super_admin_only = True


class CustomerListView(CustomerMixin, ObjectListView):
    table = tables.CustomerTable
    add_url = "customer_add"


class CustomerEditView(CustomerMixin, ObjectEditView):
    form_class = forms.CustomerForm

    def get_form_kwargs(self):
        kwargs = super().get_form_kwargs()
        kwargs.pop("user")
        return kwargs


class CustomerDeleteView(CustomerMixin, ObjectDeleteView):
    pass


# --- Administrators: Super Admins and Customer Admins (`autoenroll-server admins`) --------------------------------


class AdministratorMixin:
    """Super Admins manage every administrator; a Customer Admin the Customer Admins of their own customer
    (`restrict_administrators`). Nobody deletes or disables themselves."""

    model = get_user_model()
    verbose_name = "administrator"
    nav = "administrators"
    list_url = "administrator_list"
    queryset = get_user_model().objects.select_related("customer_admin__customer").order_by("username")

    def get_queryset(self):  # restrict() (RestrictedMixin), then the rules of who manages whom
        return restrict_administrators(super().get_queryset(), self.request.user)

    def not_oneself(self, user):
        if user.pk == self.request.user.pk:
            raise PermissionDenied("You cannot delete or disable your own account.")
        return user


class AdministratorListView(AdministratorMixin, ObjectListView):
    table = tables.AdministratorTable
    title = "Administrators"
    add_url = "administrator_add"


@sensitive_passwords
class AdministratorEditView(AdministratorMixin, ObjectEditView):
    def get_form_class(self):
        return forms.AdministratorForm if "pk" in self.kwargs else forms.AdministratorAddForm


@sensitive_passwords
class AdministratorPasswordView(AdministratorMixin, RestrictedMixin, DetailView):
    """Set a new password (through the password validators; the form never shows it back)."""

    template_name = "web/administrator_password.html"

    def get_context_data(self, **kwargs):
        kwargs.setdefault("form", forms.AdministratorPasswordForm(self.object))
        return super().get_context_data(**kwargs)

    def post(self, request, pk):
        self.object = user = self.get_object()
        form = forms.AdministratorPasswordForm(user, request.POST)
        if not form.is_valid():
            return self.render_to_response(self.get_context_data(form=form))
        form.save()
        if user.pk == request.user.pk:
            update_session_auth_hash(request, user)  # one's own new password keeps one signed in
        log.info("password of administrator %s set by %s", user.get_username(), request.user.get_username())
        messages.success(request, f"New password of {user} set.")
        return HttpResponseRedirect(reverse("web:administrator_list"))


class AdministratorActiveView(AdministratorMixin, RestrictedMixin, DetailView):
    """Disable (the account can no longer sign in, its sessions end) or enable again, after a confirmation."""

    template_name = "web/administrator_active.html"
    active = False

    def get_object(self, queryset=None):
        return self.not_oneself(super().get_object(queryset))

    def get_context_data(self, **kwargs):
        return super().get_context_data(action="enable" if self.active else "disable", **kwargs)

    def post(self, request, pk):
        user = self.get_object()
        user.is_active = self.active
        user.save(update_fields=["is_active"])
        action = "enabled" if self.active else "disabled"
        log.info("administrator %s %s by %s", user.get_username(), action, request.user.get_username())
        messages.success(request, f"Administrator {user} {action}.")
        return HttpResponseRedirect(reverse("web:administrator_list"))


class AdministratorDeleteView(AdministratorMixin, ObjectDeleteView):
    def get_object(self, queryset=None):
        return self.not_oneself(super().get_object(queryset))


# --- Certificates (guide 5) ----------------------------------------------------------------------------------------


class CertificateMixin:
    model = Certificate
    nav = "certificates"
    queryset = Certificate.objects.select_related("person__customer", "ca")


class CertificateListView(CertificateMixin, ObjectListView):
    table = tables.CertificateTable
    filter_form = forms.CertificateFilterForm


class ExpiringListView(CertificateMixin, ObjectListView):
    """Certificates that lapse within the first expiry notice's horizon and were not renewed (what the expiry
    notices mail about): who never logs on to a domain computer shows here, with when they last did."""

    nav = "expiring"
    title = "Expiring certificates (not renewed)"
    table = tables.ExpiringTable

    def get_queryset(self):
        now = timezone.now()
        horizon = timedelta(days=settings.CONFIG.expiry_notice_days[0])
        notified = ExpiryNotice.objects.filter(certificate=OuterRef("pk"), sent_at__isnull=False).order_by("days")
        return (
            super()
            .get_queryset()
            .filter(pk__in=expiring(now, horizon).values("pk"))
            .annotate(
                notified_days=Subquery(notified.values("days")[:1]),
                notified_at=Subquery(notified.values("sent_at")[:1]),
            )  # fmt: skip
            .order_by("not_after")
        )


class AuditListView(ObjectListView):
    """The audit trail, newest first, and what `audit verify` says of it (Super Admins: it spans customers)."""

    model = AuditRecord
    super_admin_only = True
    nav = "audit"
    title = "Audit trail"
    table = tables.AuditTable
    actions_template = "web/audit_verify.html"

    def get_queryset(self):
        return super().get_queryset().order_by(F("position").desc(nulls_first=True), "-pk")

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        if "verify" in self.request.GET:
            context["verify"] = trail.verify()
        return context


class CertificateDetailView(CertificateMixin, RestrictedMixin, DetailView):
    template_name = "web/certificate_detail.html"

    def get_context_data(self, **kwargs):
        cert = self.object
        chain = []
        ca = cert.ca
        while ca is not None:
            chain.append(ca)
            ca = ca.parent
        return super().get_context_data(chain=chain, events=cert.events.all()[:20], **kwargs)


class CertificateDownloadView(CertificateMixin, RestrictedMixin, View):
    """PEM, DER, or the chain (the certificate and its CAs, PEM)."""

    kind = "pem"

    def get(self, request, pk):
        cert = get_object_or_404(self.get_queryset(), pk=pk)
        name = f"{cert.mail or 'certificate'}-{cert.serial}"
        if self.kind == "der":
            body, ctype, ext = _der(cert.pem), "application/pkix-cert", "cer"
        elif self.kind == "chain":
            body, ctype, ext = cert.pem + authority.chain_pem(cert.ca), "application/x-pem-file", "chain.pem"
        else:
            body, ctype, ext = cert.pem, "application/x-pem-file", "pem"
        response = HttpResponse(body, content_type=ctype)
        response["Content-Disposition"] = f'attachment; filename="{name}.{ext}"'
        return response


def _der(pem: str) -> bytes:
    return x509.load_pem_x509_certificate(pem.encode()).public_bytes(Encoding.DER)


class CertificateRevokeView(CertificateMixin, RestrictedMixin, DetailView):
    """Revoke with a reason, after an explicit confirmation; who and when are recorded on the certificate
    and in the enrollment log."""

    template_name = "web/certificate_revoke.html"

    def get_context_data(self, **kwargs):
        kwargs.setdefault("form", forms.RevokeForm())
        return super().get_context_data(**kwargs)

    def post(self, request, pk):
        self.object = cert = self.get_object()
        form = forms.RevokeForm(request.POST)
        if not form.is_valid():
            return self.render_to_response(self.get_context_data(form=form))
        by = request.user.get_username()
        if not lifecycle.revoke([cert], form.cleaned_data["reason"], by=by):
            messages.info(request, f"Certificate {cert.serial} is already revoked.")
        else:
            messages.success(request, f"Certificate {cert.serial} revoked.")
        return HttpResponseRedirect(reverse("web:certificate_detail", args=[cert.pk]))


# --- Enrollment log (guide 8.1.1) and requests -----------------------------------------------------------------------


class EventListView(ObjectListView):
    model = EnrollmentEvent
    nav = "events"
    title = "Enrollment log"
    table = tables.EventTable
    filter_form = forms.EventFilterForm


class PersonListView(ObjectListView):
    """The users AD described at their last logon, with the certificate they hold now."""

    model = Person
    nav = "persons"
    title = "Persons"
    table = tables.PersonTable
    filter_form = forms.PersonFilterForm

    def get_queryset(self):
        valid = Certificate.objects.valid().filter(profile=Certificate.Profile.SMIME, person=OuterRef("pk"))
        newest = valid.order_by(F("installed_at").desc(nulls_last=True), "-not_before")
        return (
            super()
            .get_queryset()
            .select_related("customer", "ad_server")
            .annotate(
                valid_count=Coalesce(
                    Subquery(valid.order_by().values("person").annotate(n=Count("pk")).values("n")[:1]), Value(0)
                ),
                current_id=Subquery(newest.values("pk")[:1]),
                current_serial=Subquery(newest.values("serial")[:1]),
            )
        )


class RequestMixin:
    model = EnrollmentRequest
    nav = "requests"
    queryset = EnrollmentRequest.objects.select_related("person", "customer", "organization")


class RequestListView(RequestMixin, ObjectListView):
    title = "Enrollment requests"
    table = tables.RequestTable
    filter_form = forms.RequestFilterForm

    def get(self, request, *args, **kwargs):
        if "status" not in request.GET:  # the page is for deciding: pending first
            request.GET = request.GET.copy()
            request.GET["status"] = EnrollmentRequest.Status.PENDING
        return super().get(request, *args, **kwargs)


class RequestDecideView(RequestMixin, RestrictedMixin, DetailView):
    """Approve or reject one pending request (customers with require_approval), after a confirmation."""

    template_name = "web/request_decide.html"
    action = "approve"

    def get_context_data(self, **kwargs):
        return super().get_context_data(action=self.action, **kwargs)

    def post(self, request, pk):
        req = self.get_object()
        by = request.user.get_username()
        try:
            if self.action == "approve":
                lifecycle.approve(req.pk, by=by)
            else:
                lifecycle.reject(req.pk, by=by)
        except ValueError as exc:
            messages.error(request, str(exc))
        except EnrollmentError as exc:
            messages.error(request, f"Error {exc.code}: {exc.message}")
        else:
            messages.success(request, f"Request of {req.person.principal} {self.action}d.")
        return HttpResponseRedirect(reverse("web:request_list"))
