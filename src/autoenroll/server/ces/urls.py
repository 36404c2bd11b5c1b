"""Where Windows and Samba/cepces expect the services (paths as AD CS publishes them; IIS matches
them without regard to case, and some clients add a trailing slash)."""

import re

from django.urls import re_path

from . import views

app_name = "ces"


def _any_case(literal: str) -> str:
    """`literal` as a regex matching any letter case, with character classes (Django's reverse() cannot
    read inline flags such as (?i:...)); reverse() gives the literal back as written."""
    return "".join(f"[{c}{c.swapcase()}]" if c.isalpha() else re.escape(c) for c in literal)


urlpatterns = [
    re_path(rf"^{_any_case('ADPolicyProvider_CEP_Kerberos/service.svc/CEP')}/?$", views.cep, name="cep"),
    re_path(
        rf"^(?P<ca_name>[A-Za-z0-9._-]{{1,200}}){_any_case('_CES_Kerberos/service.svc/CES')}/?$", views.ces, name="ces"
    ),
]
