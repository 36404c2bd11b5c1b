from django.apps import AppConfig


class TenantsConfig(AppConfig):
    name = "autoenroll.server.tenants"
    label = "tenants"
    verbose_name = "Customers and organizations"
