"""Whatever a client sends, it gets a SOAP 1.2 fault that validates, never a traceback or an HTML page."""

import base64

import pytest

from autoenroll.server.ces import soap, wstep, xcep
from autoenroll.server.enrollment.models import EnrollmentEvent

from .conftest import CEP_PATH, assert_valid, ces_path, envelope, fault_of, get_policies, rst

pytestmark = pytest.mark.django_db


def refused(response, schema, status: int = 500) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/soap+xml")
    assert b"Traceback" not in response.content
    assert_valid(schema, response.content)
    return fault_of(response.content)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"this is not xml",
        b"<s:Envelope xmlns:s='http://www.w3.org/2003/05/soap-envelope'><s:Body>",
        b"<Envelope/>",
        b"<s:Envelope xmlns:s='http://www.w3.org/2003/05/soap-envelope'><s:Header/></s:Envelope>",
        b"<s:Envelope xmlns:s='http://www.w3.org/2003/05/soap-envelope'><s:Body><a/><b/></s:Body></s:Envelope>",
        b"<?xml version='1.0'?><!DOCTYPE x [<!ENTITY a 'aaaa'><!ENTITY b '&a;&a;&a;'>]>"
        b"<s:Envelope xmlns:s='http://www.w3.org/2003/05/soap-envelope'><s:Body>&b;</s:Body></s:Envelope>",
        b"<s:Envelope xmlns:s='http://www.w3.org/2003/05/soap-envelope'><s:Body><x/></s:Body></s:Envelope>",
    ],
    ids=["empty", "not-xml", "truncated", "no-namespace", "no-body", "two-children", "entities", "no-action"],
)
def test_malformed_soap_is_a_sender_fault(user1, ready, ca, schema, body, caplog):
    for path in (CEP_PATH, ces_path(ca[1])):
        fault = refused(user1.post(path, body), schema)
        assert fault["code"] == "s:Sender"
    # the client's mistake: a warning of ours, not Django's "Internal Server Error" with the 500
    assert not [r for r in caplog.records if r.name == "django.request" and r.levelname == "ERROR"]
    assert any(r.getMessage().startswith("SOAP fault (Sender") for r in caplog.records)


def test_soap_11_is_a_version_mismatch(user1, ready, schema):
    body = b"<e:Envelope xmlns:e='http://schemas.xmlsoap.org/soap/envelope/'><e:Body><x/></e:Body></e:Envelope>"
    assert refused(user1.post(CEP_PATH, body), schema)["code"] == "s:VersionMismatch"


def test_unknown_action_and_unknown_must_understand_header(user1, ready, ca, schema):
    fault = refused(user1.post(CEP_PATH, envelope("urn:example:Nope", "<x xmlns='urn:x'/>")), schema)
    assert fault["subcode"] == "a:ActionNotSupported"
    fault = refused(user1.post(ces_path(ca[1]), get_policies()), schema)  # CEP action at the CES
    assert fault["subcode"] == "a:ActionNotSupported"
    body = get_policies().replace(b"</s:Header>", b"<z:Odd xmlns:z='urn:z' s:mustUnderstand='true'/></s:Header>")
    assert refused(user1.post(CEP_PATH, body), schema)["code"] == "s:MustUnderstand"


def test_get_policies_without_client_is_a_fault(user1, ready, schema):
    body = envelope(xcep.ACTION_GET_POLICIES, f"<GetPolicies xmlns='{soap.XCEP}'/>")
    assert "client element" in refused(user1.post(CEP_PATH, body), schema)["reason"]


def _guide_refusal(user1, ca, schema, body, code: int, message: str) -> dict:
    fault = refused(user1.post(ces_path(ca[1]), body), schema)
    assert fault["reason"] == f"Error {code}: {message}"
    assert EnrollmentEvent.objects.filter(outcome="error", error_code=code, principal="user1@TEST.COM").exists()
    return fault


def test_missing_binary_security_token_is_guide_error_29(user1, ready, ca, schema):
    _guide_refusal(user1, ca, schema, rst(None), 29, "No request supplied..")


@pytest.mark.parametrize(
    "token",
    ["!!!not base64!!!", base64.b64encode(b"\x30\x03\x02\x01\x01").decode(), base64.b64encode(b"x" * 50).decode()],
)
def test_base64_or_der_garbage_is_guide_error_15(user1, ready, ca, schema, token):
    fault = _guide_refusal(user1, ca, schema, rst(token), 15, "Invalid CSR..")
    assert int(fault["error_code"]) == wstep.signed32(wstep.CERTSRV_E_BAD_REQUESTSUBJECT)


def test_query_token_status_without_or_with_unknown_request_id(user1, ready, ca, schema):
    _guide_refusal(user1, ca, schema, rst(None, request_type=wstep.REQUEST_QUERY), 29, "No request supplied..")
    fault = _guide_refusal(
        user1, ca, schema, rst(None, request_type=wstep.REQUEST_QUERY, request_id="12345"), 25, "Failed to get cert.."
    )
    assert fault["request_id"] == "12345"


def test_missing_or_unknown_request_type(user1, ready, ca, schema):
    body = envelope(wstep.ACTION_RST, f"<RequestSecurityToken xmlns='{soap.WST}'/>")
    assert "RequestType" in refused(user1.post(ces_path(ca[1]), body), schema)["reason"]
    body = rst("AAAA", request_type="http://docs.oasis-open.org/ws-sx/ws-trust/200512/KET")
    assert "not supported" in refused(user1.post(ces_path(ca[1]), body), schema)["reason"]


def test_unauthenticated_requests_get_401_negotiate_with_a_fault_body(user1, ready, ca, schema):
    for path in (CEP_PATH, ces_path(ca[1])):
        response = user1.post(path, get_policies(), auth=False)
        assert response["WWW-Authenticate"] == "Negotiate"
        refused(response, schema, status=401)
    response = user1.post(CEP_PATH, get_policies(), auth=False, HTTP_AUTHORIZATION="Negotiate !!!")
    refused(response, schema, status=401)


def test_get_unknown_ca_oversize_and_internal_errors(user1, ready, ca, schema, monkeypatch):
    response = user1.client.get(CEP_PATH, secure=True)
    assert refused(response, schema, status=405) and response["Allow"] == "POST"
    refused(user1.post("/nope_CES_Kerberos/service.svc/CES", rst(None)), schema, status=404)
    refused(user1.post(CEP_PATH, b"<" * (soap.MAX_BODY_BYTES + 1)), schema, status=413)
    # beyond Django's own limit (2.5 MB: RequestDataTooBig was a 500 with a traceback), refused unread
    too_big = user1.post(CEP_PATH, b"<" * (3 * 1024 * 1024))
    refused(too_big, schema, status=413)
    for length in ("１２", "-1", "1e3"):  # int() read the first as 12: the body was read at a length never sent
        refused(user1.post(CEP_PATH, get_policies(), CONTENT_LENGTH=length), schema, status=400)
    not_soap = user1.client.post(CEP_PATH, data="a=b", content_type="application/x-www-form-urlencoded", secure=True)
    refused(not_soap, schema, status=415)

    def boom(*args, **kwargs):
        raise RuntimeError("database on fire")

    monkeypatch.setattr(xcep, "get_policies", boom)
    fault = refused(user1.post(CEP_PATH, get_policies()), schema)
    assert fault["code"] == "s:Receiver" and "fire" not in fault["reason"]


def test_paths_are_case_insensitive_and_accept_a_trailing_slash(user1, ready, ca, schema):
    for path in (CEP_PATH + "/", CEP_PATH.lower()):
        assert user1.post(path, get_policies()).status_code == 200
    assert user1.post(ces_path(ca[1]).replace("CES", "ces") + "/", rst(None)).status_code == 500  # a fault, routed
