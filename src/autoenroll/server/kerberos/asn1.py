"""The few ASN.1 types of SPNEGO (RFC 4178) and Kerberos (RFC 4120) that name a ticket's service.

Only what `spnego.ticket_service` reads: the NegTokenInit a client sends first, and the AP-REQ's ticket
(realm and sname travel in clear). Both modules use EXPLICIT TAGS. Neither pyasn1-modules nor
pyasn1-alt-modules ships RFC 4120 or RFC 4178, hence the declarations here.
"""

from __future__ import annotations

from pyasn1.type import char, namedtype, tag, univ

__all__ = ["KRB5_MECHS", "SPNEGO_MECH", "TOK_ID_AP_REQ", "ApReq", "GssToken", "NegotiationToken"]

SPNEGO_MECH = univ.ObjectIdentifier("1.3.6.1.5.5.2")
#: The Kerberos 5 mechanism, and the variant Microsoft clients also announce.
KRB5_MECHS = (univ.ObjectIdentifier("1.2.840.113554.1.2.2"), univ.ObjectIdentifier("1.2.840.48018.1.2.2"))
#: RFC 4121 4.1: the two octets between the mechanism OID and a KRB_AP_REQ.
TOK_ID_AP_REQ = b"\x01\x00"


def _explicit(number: int, asn1_type: univ.Asn1Type) -> univ.Asn1Type:
    return asn1_type.subtype(explicitTag=tag.Tag(tag.tagClassContext, tag.tagFormatSimple, number))


def _application(number: int) -> tag.TagSet:
    return univ.Sequence.tagSet.tagExplicitly(tag.Tag(tag.tagClassApplication, tag.tagFormatConstructed, number))


class GssToken(univ.Any):
    """RFC 2743 3.1 InitialContextToken: [APPLICATION 0] IMPLICIT SEQUENCE { thisMech OID, innerContextToken }.

    The inner token is not DER for every mechanism (Kerberos puts a 2-octet TOK_ID before its AP-REQ), so
    the body is kept as octets: the mechanism OID is decoded from its start, the rest is the inner token.
    """

    tagSet = univ.Any.tagSet.tagImplicitly(tag.Tag(tag.tagClassApplication, tag.tagFormatConstructed, 0))


# --- RFC 4178 4.2 -------------------------------------------------------------------------------------------


class MechTypeList(univ.SequenceOf):
    componentType = univ.ObjectIdentifier()


class NegTokenInit(univ.Sequence):
    componentType = namedtype.NamedTypes(
        namedtype.NamedType("mechTypes", _explicit(0, MechTypeList())),
        namedtype.OptionalNamedType("reqFlags", _explicit(1, univ.BitString())),
        namedtype.OptionalNamedType("mechToken", _explicit(2, univ.OctetString())),
        namedtype.OptionalNamedType("mechListMIC", _explicit(3, univ.OctetString())),
    )


class NegTokenResp(univ.Sequence):
    componentType = namedtype.NamedTypes(
        namedtype.OptionalNamedType("negState", _explicit(0, univ.Enumerated())),
        namedtype.OptionalNamedType("supportedMech", _explicit(1, univ.ObjectIdentifier())),
        namedtype.OptionalNamedType("responseToken", _explicit(2, univ.OctetString())),
        namedtype.OptionalNamedType("mechListMIC", _explicit(3, univ.OctetString())),
    )


class NegotiationToken(univ.Choice):
    componentType = namedtype.NamedTypes(
        namedtype.NamedType("negTokenInit", _explicit(0, NegTokenInit())),
        namedtype.NamedType("negTokenResp", _explicit(1, NegTokenResp())),
    )


# --- RFC 4120 5.2, 5.3, 5.5.1 -------------------------------------------------------------------------------


class KerberosString(char.GeneralString):
    pass


class PrincipalName(univ.Sequence):
    componentType = namedtype.NamedTypes(
        namedtype.NamedType("name-type", _explicit(0, univ.Integer())),
        namedtype.NamedType("name-string", _explicit(1, univ.SequenceOf(componentType=KerberosString()))),
    )


# The encrypted parts are kept as undecoded octets (Any): only the clear realm and sname are read, and
# decoding the ciphertext structure would cost most of the time of a parse.
class Ticket(univ.Sequence):
    tagSet = _application(1)
    componentType = namedtype.NamedTypes(
        namedtype.NamedType("tkt-vno", _explicit(0, univ.Integer())),
        namedtype.NamedType("realm", _explicit(1, KerberosString())),
        namedtype.NamedType("sname", _explicit(2, PrincipalName())),
        namedtype.NamedType("enc-part", _explicit(3, univ.Any())),
    )


class ApReq(univ.Sequence):
    tagSet = _application(14)
    componentType = namedtype.NamedTypes(
        namedtype.NamedType("pvno", _explicit(0, univ.Integer())),
        namedtype.NamedType("msg-type", _explicit(1, univ.Integer())),
        namedtype.NamedType("ap-options", _explicit(2, univ.BitString())),
        namedtype.NamedType("ticket", _explicit(3, Ticket())),
        namedtype.NamedType("authenticator", _explicit(4, univ.Any())),
    )
