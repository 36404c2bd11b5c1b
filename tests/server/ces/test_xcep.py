"""MS-XCEP GetPolicies over real Kerberos: what Windows and certmonger learn from the policy service."""

import base64
import dataclasses
from types import SimpleNamespace

import pytest
from cryptography import x509

from autoenroll.server.ces import templates, xcep
from autoenroll.server.kerberos.models import KerberosRealm

from .conftest import CEP_PATH, NS, assert_valid, get_policies

pytestmark = pytest.mark.django_db


def test_get_policies_lists_the_user_template_and_the_issuing_ca(user1, ready, ca, schema):
    response = user1.post(CEP_PATH, get_policies(last_update="0001-01-01T00:00:00"))
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("application/soap+xml")
    doc = assert_valid(schema, response.content)
    assert doc.findtext("s:Header/a:Action", namespaces=NS) == xcep.ACTION_GET_POLICIES_RESPONSE
    res = doc.find(".//x:GetPoliciesResponse/x:response", NS)
    assert res.findtext("x:policyID", namespaces=NS) == xcep.policy_id()
    assert res.findtext("x:nextUpdateHours", namespaces=NS) == "8"
    oids = {
        o.findtext("x:oIDReferenceID", namespaces=NS): (
            o.findtext("x:value", namespaces=NS),
            o.findtext("x:group", namespaces=NS),
        )
        for o in doc.iterfind(".//x:oIDs/x:oID", NS)
    }
    (policy,) = res.iterfind("x:policies/x:policy", NS)
    template_oid, group = oids[policy.findtext("x:policyOIDReference", namespaces=NS)]
    assert template_oid == templates.USER.oid and template_oid.startswith("1.3.6.1.4.1.311.21.8.") and group == "9"
    attrs = policy.find("x:attributes", NS)
    assert attrs.findtext("x:commonName", namespaces=NS) == "User"
    assert attrs.findtext("x:permission/x:enroll", namespaces=NS) == "true"
    assert attrs.findtext("x:permission/x:autoEnroll", namespaces=NS) == "true"
    assert int(attrs.findtext("x:certificateValidity/x:validityPeriodSeconds", namespaces=NS)) == 365 * 86400
    assert int(attrs.findtext("x:certificateValidity/x:renewalPeriodSeconds", namespaces=NS)) > 0
    key = attrs.find("x:privateKeyAttributes", NS)
    assert key.findtext("x:minimalKeyLength", namespaces=NS) == "2048"
    assert oids[key.findtext("x:algorithmOIDReference", namespaces=NS)] == (templates.OID_RSA, "3")
    assert key.findtext("x:cryptoProviders/x:provider", namespaces=NS) == "Microsoft Software Key Storage Provider"
    assert oids[attrs.findtext("x:hashAlgorithmOIDReference", namespaces=NS)] == (templates.OID_SHA256, "1")
    flags = int(attrs.findtext("x:subjectNameFlags", namespaces=NS))
    assert flags & templates.SUBJECT_ALT_REQUIRE_EMAIL and not flags & 0x00010001  # names come from AD only
    ext_oids = {
        oids[e.findtext("x:oIDReference", namespaces=NS)][0] for e in attrs.iterfind("x:extensions/x:extension", NS)
    }
    assert ext_oids == {templates.OID_TEMPLATE_INFO, templates.OID_EKU, templates.OID_KEY_USAGE}
    (ca_el,) = doc.iterfind(".//x:GetPoliciesResponse/x:cAs/x:cA", NS)
    der = base64.b64decode(ca_el.findtext("x:certificate", namespaces=NS))
    assert x509.load_der_x509_certificate(der) == x509.load_pem_x509_certificate(ca[1].certificate_pem.encode())
    uri = ca_el.find("x:uris/x:cAURI", NS)
    assert uri.findtext("x:clientAuthentication", namespaces=NS) == "2"
    assert (
        uri.findtext("x:uri", namespaces=NS) == f"https://ccm.test.com:8443/{ca[1].name}_CES_Kerberos/service.svc/CES"
    )
    assert ca_el.findtext("x:enrollPermission", namespaces=NS) == "true"


def test_policy_id_and_template_oid_are_stable(user1, ready, schema):
    first = user1.post(CEP_PATH, get_policies()).content
    second = user1.post(CEP_PATH, get_policies()).content
    for body in (first, second):
        doc = assert_valid(schema, body)
        assert doc.findtext(".//x:policyID", namespaces=NS) == xcep.policy_id()
    assert templates.USER.oid == templates.find(name="User").oid == templates.find(oid=templates.USER.oid).oid


def test_prefixes_do_not_matter_only_namespaces(user1, ready, schema):
    response = user1.post(CEP_PATH, get_policies(prefixes=("ns0", "ns1")))
    assert response.status_code == 200, response.content
    assert_valid(schema, response.content)


def test_a_realm_without_customer_gets_no_permission(user1, ready, schema):
    KerberosRealm.objects.update(customer=None)
    doc = assert_valid(schema, user1.post(CEP_PATH, get_policies()).content)
    assert doc.findtext(".//x:permission/x:enroll", namespaces=NS) == "false"
    assert doc.findtext(".//x:cA/x:enrollPermission", namespaces=NS) == "false"


def test_request_filter_and_unchanged_policy(user1, ready, schema):
    doc = assert_valid(schema, user1.post(CEP_PATH, get_policies(filter_oids=["1.2.3.4"])).content)
    assert doc.find(".//x:response/x:policies", NS).get("{http://www.w3.org/2001/XMLSchema-instance}nil") == "true"
    assert doc.find(".//x:response/x:policies/x:policy", NS) is None
    doc = assert_valid(schema, user1.post(CEP_PATH, get_policies(filter_oids=[templates.USER.oid])).content)
    assert doc.find(".//x:response/x:policies/x:policy", NS) is not None
    doc = assert_valid(schema, user1.post(CEP_PATH, get_policies(last_update="2999-01-01T00:00:00Z")).content)
    assert doc.findtext(".//x:policiesNotChanged", namespaces=NS) == "true"
    assert doc.find(".//x:GetPoliciesResponse/x:cAs/x:cA", NS) is None


def test_user_templates_go_to_users_and_computer_templates_to_computer_accounts_only():
    realm = SimpleNamespace(customer=SimpleNamespace(enabled=True))
    computers = dataclasses.replace(templates.USER, for_computers=True)
    allowed = {
        principal: (
            xcep.permission_for(principal, realm, templates.USER).enroll,
            xcep.permission_for(principal, realm, computers).enroll,
        )
        for principal in ("user1@TEST.COM", "WS1$@TEST.COM", "HTTP/ccm.test.com@TEST.COM", "user1")
    }
    assert allowed == {
        "user1@TEST.COM": (True, False),
        "WS1$@TEST.COM": (False, True),
        "HTTP/ccm.test.com@TEST.COM": (False, False),
        "user1": (False, False),
    }
