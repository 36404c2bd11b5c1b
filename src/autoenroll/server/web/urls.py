"""URL names of the admin pages: <thing>_list, _add, _edit, _delete, and the actions."""

from django.contrib.auth import views as auth_views
from django.urls import path

from . import views

app_name = "web"
urlpatterns = [
    path("login/", auth_views.LoginView.as_view(template_name="web/login.html"), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", views.DashboardView.as_view(), name="dashboard"),
    # Super Admin: Settings / Autoenrollment (guide 2.2)
    path("settings/autoenrollment/", views.RealmListView.as_view(), name="realm_list"),
    path("settings/autoenrollment/add/", views.RealmEditView.as_view(), name="realm_add"),
    path("settings/autoenrollment/<int:pk>/", views.RealmEditView.as_view(), name="realm_edit"),
    path("settings/autoenrollment/<int:pk>/delete/", views.RealmDeleteView.as_view(), name="realm_delete"),
    path("settings/autoenrollment/<int:pk>/check/", views.RealmCheckView.as_view(), name="realm_check"),
    path("settings/autoenrollment/login.conf", views.LoginConfView.as_view(), name="loginconf"),
    path(
        "settings/autoenrollment/login.conf/download", views.LoginConfDownloadView.as_view(), name="loginconf_download"
    ),
    path("settings/autoenrollment/import/", views.LoginConfImportView.as_view(), name="loginconf_import"),
    # Customer: Settings / AD Server (guide 2.3)
    path("settings/adservers/", views.ADServerListView.as_view(), name="adserver_list"),
    path("settings/adservers/add/", views.ADServerEditView.as_view(), name="adserver_add"),
    path("settings/adservers/import/", views.ADServerImportView.as_view(), name="adserver_import"),
    path("settings/adservers/<int:pk>/", views.ADServerEditView.as_view(), name="adserver_edit"),
    path("settings/adservers/<int:pk>/delete/", views.ADServerDeleteView.as_view(), name="adserver_delete"),
    path("settings/adservers/<int:pk>/verify/", views.ADServerVerifyView.as_view(), name="adserver_verify"),
    # Customer: Settings / Organizations, Domains (figure 2.15)
    path("settings/organizations/", views.OrganizationListView.as_view(), name="organization_list"),
    path("settings/organizations/add/", views.OrganizationEditView.as_view(), name="organization_add"),
    path("settings/organizations/<int:pk>/", views.OrganizationEditView.as_view(), name="organization_edit"),
    path("settings/organizations/<int:pk>/delete/", views.OrganizationDeleteView.as_view(), name="organization_delete"),
    path("settings/domains/", views.DomainListView.as_view(), name="domain_list"),
    path("settings/domains/add/", views.DomainEditView.as_view(), name="domain_add"),
    path("settings/domains/<int:pk>/", views.DomainEditView.as_view(), name="domain_edit"),
    path("settings/domains/<int:pk>/delete/", views.DomainDeleteView.as_view(), name="domain_delete"),
    # Super Admin: customers
    path("customers/", views.CustomerListView.as_view(), name="customer_list"),
    path("customers/add/", views.CustomerEditView.as_view(), name="customer_add"),
    path("customers/<int:pk>/", views.CustomerEditView.as_view(), name="customer_edit"),
    path("customers/<int:pk>/delete/", views.CustomerDeleteView.as_view(), name="customer_delete"),
    # Administrators: Super Admins and Customer Admins
    path("administrators/", views.AdministratorListView.as_view(), name="administrator_list"),
    path("administrators/add/", views.AdministratorEditView.as_view(), name="administrator_add"),
    path("administrators/<int:pk>/", views.AdministratorEditView.as_view(), name="administrator_edit"),
    path("administrators/<int:pk>/password/", views.AdministratorPasswordView.as_view(), name="administrator_password"),
    path(
        "administrators/<int:pk>/disable/",
        views.AdministratorActiveView.as_view(active=False),
        name="administrator_disable",
    ),
    path(
        "administrators/<int:pk>/enable/",
        views.AdministratorActiveView.as_view(active=True),
        name="administrator_enable",
    ),
    path("administrators/<int:pk>/delete/", views.AdministratorDeleteView.as_view(), name="administrator_delete"),
    path("persons/", views.PersonListView.as_view(), name="person_list"),
    # Certificates (guide 5)
    path("certificates/", views.CertificateListView.as_view(), name="certificate_list"),
    path("certificates/expiring/", views.ExpiringListView.as_view(), name="expiring_list"),
    path("certificates/<int:pk>/", views.CertificateDetailView.as_view(), name="certificate_detail"),
    path("certificates/<int:pk>/pem", views.CertificateDownloadView.as_view(kind="pem"), name="certificate_pem"),
    path("certificates/<int:pk>/der", views.CertificateDownloadView.as_view(kind="der"), name="certificate_der"),
    path("certificates/<int:pk>/chain", views.CertificateDownloadView.as_view(kind="chain"), name="certificate_chain"),
    path("certificates/<int:pk>/revoke/", views.CertificateRevokeView.as_view(), name="certificate_revoke"),
    # Enrollment log (guide 8.1.1) and pending requests
    path("log/", views.EventListView.as_view(), name="event_list"),
    path("audit/", views.AuditListView.as_view(), name="audit_list"),
    path("requests/", views.RequestListView.as_view(), name="request_list"),
    path("requests/<uuid:pk>/approve/", views.RequestDecideView.as_view(action="approve"), name="request_approve"),
    path("requests/<uuid:pk>/reject/", views.RequestDecideView.as_view(action="reject"), name="request_reject"),
]
