"""Hostile input to every admin page: Hypothesis fills the fields each page's own form names (and some it
does not) with what an admin would not type, as a Super Admin and as a Customer Admin, over GET and POST.
No answer may be a server error, and no page may raise. Each example is rolled back, so a delete page's
POST leaves the next example something to delete. Examples per page: AUTOENROLL_HYPOTHESIS_EXAMPLES
(default 200) / 8."""

from __future__ import annotations

import io
import os
import re

import pytest
from django.db import transaction
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autoenroll.server.kerberos.models import KerberosRealm

from .conftest import Tenant, client_for
from .test_isolation import url_for, web_patterns

pytestmark = pytest.mark.django_db

EXAMPLES = max(10, int(os.environ.get("AUTOENROLL_HYPOTHESIS_EXAMPLES", "200")) // 8)
HYPOTHESIS = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
PAGES = [(name, kwargs) for name, kwargs in web_patterns() if name not in ("login", "logout")]
_FIELD = re.compile(r"<(?:input|select|textarea)\b[^>]*>", re.IGNORECASE)
_NAME = re.compile(r'\bname="([^"]+)"')
#: Query parameters list pages read, besides their filter forms' fields.
QUERY_NAMES = ["q", "page", "sort", "status", "customer", "state", "step", "person", "days", "o", "per_page"]

# Text an HTTP client can send: no lone surrogates (they cannot be encoded), NUL and controls included.
hostile_text = st.one_of(
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=300),
    st.sampled_from(
        [
            "",
            " ",
            "0",
            "-1",
            "99999999999999999999",
            "1e308",
            "NaN",
            "\x00",
            "*)(cn=*",
            "\\",
            "../../etc/passwd",
            "<script>x</script>",
            "'; DROP TABLE x; --",
            "２",
            "١٢",
            "a" * 5000,
            "user@",
            "@x",
            "x@x@x",
            "CN=a,DC=b",
            "ldaps://[::1",
            "http://",
            "key_compromise",
            "on",
            "true",
        ]
    ),
)


class _Undo(Exception):
    pass


@pytest.fixture
def pages(ca, tenant_a: Tenant, super_admin):
    realm = KerberosRealm.objects.create(
        domain="alpha.example", keytab_path="/nonexistent.keytab", service_principal="HTTP/ccm.alpha@ALPHA.EXAMPLE"
    )
    super_client = client_for(super_admin)
    urls, fields, files = {}, {}, {}
    for name, kwargs in PAGES:
        url = urls[name] = url_for(name, kwargs, tenant_a, realm)
        tags = [
            (tag, _NAME.search(tag)) for tag in _FIELD.findall(super_client.get(url).content.decode(errors="replace"))
        ]
        named = {match[1]: tag for tag, match in tags if match and match[1] != "csrfmiddlewaretoken"}
        fields[name] = sorted(named)
        files[name] = {field for field, tag in named.items() if 'type="file"' in tag}
    return urls, fields, files, super_client, client_for(tenant_a.administrator)


def _form(draw, names: list[str], file_names: set[str]) -> dict:
    chosen = draw(st.lists(st.sampled_from(names), unique=True)) if names else []
    extra = draw(st.lists(st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=20), max_size=2))
    form = {}
    for key in [*chosen, *extra]:
        if key in file_names:
            upload = io.BytesIO(draw(st.binary(max_size=2000)))
            upload.name = draw(st.sampled_from(["login.conf", "servers.csv", "x", "../x.keytab"]))
            form[key] = upload
        else:
            form[key] = draw(st.one_of(hostile_text, st.lists(hostile_text, min_size=2, max_size=3)))
    return form


@st.composite
def hostile_requests(draw, names: list[str], file_names: set[str]):
    method = draw(st.sampled_from(["get", "post"]))
    if method == "get":
        query = draw(st.dictionaries(st.sampled_from(sorted({*names, *QUERY_NAMES})), hostile_text, max_size=4))
        return method, query
    return method, _form(draw, names, file_names)


@pytest.mark.parametrize("name", [name for name, _ in PAGES])
def test_no_admin_page_answers_a_server_error(pages, name, tenant_a):
    urls, fields, files, super_client, customer_client = pages

    @HYPOTHESIS
    @given(request=hostile_requests(fields[name], files[name]), as_super_admin=st.booleans())
    def check(request, as_super_admin: bool) -> None:
        method, data = request
        client: Client = super_client if as_super_admin else customer_client
        try:
            with transaction.atomic():
                response = getattr(client, method)(urls[name], data)  # a view that raises fails here
                assert response.status_code < 500, (method, data, response.status_code)
                raise _Undo
        except _Undo:
            pass

    check()
