"""Reading the ticket's service name out of a Negotiate token: well-formed tokens, and hostile bytes that must
give None (the caller then tries every realm), never an exception. No KDC needed: tokens are built here."""

from __future__ import annotations

import pytest
from pyasn1.codec.der import encoder
from pyasn1.type import univ

from autoenroll.server.kerberos import asn1
from autoenroll.server.kerberos.spnego import ticket_service

KRB5, MS_KRB5 = asn1.KRB5_MECHS


def tlv(tag_set, body: bytes) -> bytes:
    """One element with this tag around body, encoded by pyasn1."""
    return encoder.encode(univ.Any(body, tagSet=tag_set))


# EncryptedData ::= SEQUENCE { etype [0] INTEGER (18), cipher [2] OCTET STRING }
ENCRYPTED_DATA = bytes.fromhex("300ba003020112a20404027878")


def ap_req(realm: bytes = b"TEST.COM", names: tuple[bytes, ...] = (b"HTTP", b"ccm.test.com")) -> bytes:
    req = asn1.ApReq()
    req["pvno"], req["msg-type"], req["ap-options"] = 5, 14, "'00100000000000000000000000000000'B"
    ticket = req["ticket"]
    ticket["tkt-vno"], ticket["realm"] = 5, realm
    ticket["sname"]["name-type"] = 2
    ticket["sname"]["name-string"].extend(names)
    ticket["enc-part"] = ENCRYPTED_DATA  # kept undecoded by the parser
    req["authenticator"] = ENCRYPTED_DATA
    return encoder.encode(req)


def gss(mech: univ.ObjectIdentifier, inner: bytes) -> bytes:
    return tlv(asn1.GssToken.tagSet, encoder.encode(mech) + inner)


def krb5(mech: univ.ObjectIdentifier = KRB5, tok_id: bytes = asn1.TOK_ID_AP_REQ, **kw) -> bytes:
    return gss(mech, tok_id + ap_req(**kw))


def spnego(mech_token: bytes | None) -> bytes:
    token = asn1.NegotiationToken()
    init = token["negTokenInit"]
    init["mechTypes"].extend([MS_KRB5, KRB5])
    if mech_token is not None:
        init["mechToken"] = mech_token
    return gss(asn1.SPNEGO_MECH, encoder.encode(token))


def test_service_is_read_from_spnego_and_from_raw_kerberos_tokens():
    assert ticket_service(spnego(krb5())) == "HTTP/ccm.test.com@TEST.COM"
    assert ticket_service(spnego(krb5(MS_KRB5))) == "HTTP/ccm.test.com@TEST.COM"
    assert ticket_service(krb5()) == "HTTP/ccm.test.com@TEST.COM"


def test_tokens_without_a_readable_ap_req_give_none():
    assert ticket_service(spnego(None)) is None  # no optimistic mechToken
    assert ticket_service(spnego(krb5(tok_id=b"\x02\x00"))) is None  # an AP-REP, not an AP-REQ
    assert ticket_service(spnego(gss(univ.ObjectIdentifier("1.3.6.1.4.1.311.2.2.10"), b"NTLMSSP\x00"))) is None
    assert ticket_service(gss(univ.ObjectIdentifier("1.2.3.4"), asn1.TOK_ID_AP_REQ + ap_req())) is None
    assert ticket_service(spnego(spnego(krb5()))) is None  # SPNEGO inside SPNEGO is not a Kerberos token
    assert ticket_service(b"NTLMSSP\x00\x01\x00\x00\x00") is None
    response = asn1.NegotiationToken()
    response["negTokenResp"]["negState"] = 0
    assert ticket_service(gss(asn1.SPNEGO_MECH, encoder.encode(response))) is None


def test_names_that_cannot_go_into_a_log_line_give_none():
    assert ticket_service(krb5(realm=b"\xff\xfe")) is None  # not UTF-8
    assert ticket_service(krb5(names=(b"HTTP", b"evil\nhost"))) is None
    assert ticket_service(krb5(names=())) is None
    assert ticket_service(krb5(realm=b"")) is None


GOOD = spnego(krb5())


@pytest.mark.parametrize("cut", range(0, len(GOOD), 3))
def test_truncated_tokens_give_none(cut):
    assert ticket_service(GOOD[:cut]) is None


@pytest.mark.parametrize(
    "token",
    [
        b"",
        b"\x30\x00",  # a SEQUENCE where [APPLICATION 0] belongs
        b"\x61" + GOOD[1:],  # [APPLICATION 1]
        GOOD.replace(asn1.TOK_ID_AP_REQ + b"\x6e", asn1.TOK_ID_AP_REQ + b"\x6f", 1),  # AP-REQ tag -> [APPLICATION 15]
        GOOD.replace(b"\x1b\x08TEST.COM", b"\x0c\x08TEST.COM", 1),  # realm as UTF8String, not GeneralString
        b"\x60\x84\xff\xff\xff\xff\x06\x06\x2b\x06\x01\x05\x05\x02",  # 4 GiB length
        b"\x60\x89" + b"\xff" * 9,  # a length of lengths beyond any limit
        b"\x60\x80" + GOOD[2:],  # indefinite length (not DER)
        gss(asn1.SPNEGO_MECH, b"\xa0\x80" * 5000),  # deep nesting, indefinite lengths
        gss(asn1.SPNEGO_MECH, b"\xa0\x84\x7f\xff\xff\xff"),
        gss(univ.ObjectIdentifier("1.3.6." + ".".join(["4294967295999999"] * 200)), b""),  # huge OID arcs
    ],
    ids=[
        "empty",
        "sequence",
        "application-1",
        "not-an-ap-req",
        "utf8-realm",
        "huge-length",
        "length-of-length",
        "indefinite",
        "deep-indefinite",
        "inner-huge-length",
        "huge-oid",
    ],
)
def test_hostile_tokens_give_none(token):
    assert ticket_service(token) is None


def test_deeply_nested_definite_lengths_give_none():
    body = b"\x05\x00"
    for _ in range(3000):
        body = tlv(univ.Sequence.tagSet, body)
    assert ticket_service(gss(asn1.SPNEGO_MECH, body)) is None
    assert ticket_service(gss(KRB5, asn1.TOK_ID_AP_REQ + body)) is None
    assert ticket_service(spnego(body)) is None


def test_random_corruption_never_raises():
    import random

    rng = random.Random(4120)
    for _ in range(3000):
        token = bytearray(GOOD)
        for _ in range(rng.randint(1, 4)):
            token[rng.randrange(len(token))] = rng.randrange(256)
        result = ticket_service(bytes(token))
        assert result is None or isinstance(result, str)
