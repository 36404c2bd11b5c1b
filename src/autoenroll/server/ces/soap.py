"""SOAP 1.2 with WS-Addressing, the way MS-XCEP and MS-WSTEP use it: parse by namespace, answer or fault.

Clients choose their prefixes freely (Windows writes s:/a:, cepces writes ns0:/ns1:), so every lookup
here is by {namespace}localname. The XML comes from authenticated but untrusted clients: no DTDs, no
entities, no network, a size limit, and every parse error becomes a Sender fault rather than a traceback.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field

from lxml import etree

SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
WSA = "http://www.w3.org/2005/08/addressing"
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSU = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
WST = "http://docs.oasis-open.org/ws-sx/ws-trust/200512"
XCEP = "http://schemas.microsoft.com/windows/pki/2009/01/enrollmentpolicy"
WSTEP = "http://schemas.microsoft.com/windows/pki/2009/01/enrollment"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
XML_NS = "http://www.w3.org/XML/1998/namespace"

CONTENT_TYPE = "application/soap+xml; charset=utf-8"
FAULT_ACTION = "http://www.w3.org/2005/08/addressing/soap/fault"
ANONYMOUS = "http://www.w3.org/2005/08/addressing/anonymous"
#: Enrollment requests with CMC, a renewal certificate and a chain stay far below this.
MAX_BODY_BYTES = 256 * 1024
#: Header blocks we process (WS-Addressing) or knowingly ignore (wsse:Security: we authenticate by transport).
UNDERSTOOD_HEADERS = frozenset(
    f"{{{WSA}}}{name}" for name in ("Action", "To", "MessageID", "ReplyTo", "RelatesTo", "From", "FaultTo")
) | {f"{{{WSSE}}}Security"}

NSMAP = {"s": SOAP12, "a": WSA}

_PARSER = etree.XMLParser(
    resolve_entities=False,
    no_network=True,
    load_dtd=False,
    dtd_validation=False,
    huge_tree=False,
    remove_comments=True,
    remove_pis=True,
    collect_ids=False,
)
_DECLARATION = re.compile(rb"<!(DOCTYPE|ENTITY)", re.IGNORECASE)
_ACTION_PARAM = re.compile(r'action\s*=\s*"([^"]*)"', re.IGNORECASE)


class SoapFault(Exception):
    """A fault to send: SOAP 1.2 code (Sender/Receiver/...), optional subcode, reason and detail element."""

    def __init__(
        self,
        reason: str,
        *,
        code: str = "Sender",
        subcode: tuple[str, str] | None = None,
        detail: etree._Element | None = None,
        status: int = 500,
    ) -> None:
        super().__init__(reason)
        self.reason, self.code, self.subcode, self.detail, self.status = reason, code, subcode, detail, status


@dataclass
class Message:
    """A parsed request: the WS-Addressing headers we use and the single Body child."""

    action: str
    message_id: str | None
    to: str | None
    body: etree._Element
    headers: list[etree._Element] = field(default_factory=list)


def q(ns: str, name: str) -> str:
    return f"{{{ns}}}{name}"


def text(element: etree._Element | None) -> str:
    """Element text with surrounding white space removed ('' when absent); Windows wraps values in new lines."""
    if element is None:
        return ""
    return "".join(element.itertext()).strip()


def is_nil(element: etree._Element | None) -> bool:
    return element is not None and element.get(q(XSI, "nil"), "").strip() in ("true", "1")


def child(parent: etree._Element, ns: str, name: str) -> etree._Element | None:
    return parent.find(q(ns, name))


def parse(body: bytes, content_type: str = "") -> Message:
    """The request's envelope, or SoapFault (Sender, or VersionMismatch for SOAP 1.1)."""
    if not body:
        raise SoapFault("empty request body: a SOAP 1.2 envelope was expected")
    if len(body) > MAX_BODY_BYTES:
        raise SoapFault(f"request body larger than {MAX_BODY_BYTES} bytes", status=413)
    if _DECLARATION.search(body) or _DECLARATION.search(body.replace(b"\x00", b"")):
        raise SoapFault("document type declarations and entities are not accepted")
    try:
        root = etree.fromstring(body, parser=_PARSER)
    except (etree.XMLSyntaxError, ValueError) as exc:
        raise SoapFault(f"malformed XML: {exc}") from None
    if root.getroottree().docinfo.doctype:
        raise SoapFault("document type declarations are not accepted")
    if root.tag == q(SOAP11, "Envelope"):
        raise SoapFault("SOAP 1.1 is not supported; use SOAP 1.2", code="VersionMismatch")
    if root.tag != q(SOAP12, "Envelope"):
        raise SoapFault("the document is not a SOAP 1.2 envelope")
    elements = [e for e in root if isinstance(e.tag, str)]
    header = next((e for e in elements if e.tag == q(SOAP12, "Header")), None)
    body_el = next((e for e in elements if e.tag == q(SOAP12, "Body")), None)
    if body_el is None:
        raise SoapFault("the envelope has no Body")
    headers = [h for h in header if isinstance(h.tag, str)] if header is not None else []
    for block in headers:
        must = block.get(q(SOAP12, "mustUnderstand"), "").strip()
        if must in ("1", "true") and block.tag not in UNDERSTOOD_HEADERS:
            raise SoapFault(f"header {block.tag} is not understood", code="MustUnderstand")
    payload = [e for e in body_el if isinstance(e.tag, str)]
    if len(payload) != 1:
        raise SoapFault(f"the Body must hold exactly one element, it holds {len(payload)}")
    action = next((text(h) for h in headers if h.tag == q(WSA, "Action")), "")
    if not action:
        match = _ACTION_PARAM.search(content_type or "")
        action = match.group(1).strip() if match else ""
    if not action:
        raise SoapFault("no WS-Addressing Action header", subcode=(WSA, "MessageAddressingHeaderRequired"))
    message_id = next((text(h) for h in headers if h.tag == q(WSA, "MessageID")), None) or None
    to = next((text(h) for h in headers if h.tag == q(WSA, "To")), None) or None
    return Message(action=action, message_id=message_id, to=to, body=payload[0], headers=headers)


def _envelope(action: str, relates_to: str | None) -> tuple[etree._Element, etree._Element]:
    env = etree.Element(q(SOAP12, "Envelope"), nsmap=NSMAP)
    header = etree.SubElement(env, q(SOAP12, "Header"))
    act = etree.SubElement(header, q(WSA, "Action"))
    act.set(q(SOAP12, "mustUnderstand"), "1")
    act.text = action
    if relates_to:
        etree.SubElement(header, q(WSA, "RelatesTo")).text = relates_to
    etree.SubElement(header, q(WSA, "MessageID")).text = f"urn:uuid:{uuid.uuid4()}"
    body = etree.SubElement(env, q(SOAP12, "Body"))
    return env, body


def _serialize(env: etree._Element) -> bytes:
    return etree.tostring(env, xml_declaration=True, encoding="utf-8")


def response(action: str, relates_to: str | None, payload: etree._Element) -> bytes:
    env, body = _envelope(action, relates_to)
    body.append(payload)
    return _serialize(env)


def fault_document(fault: SoapFault, relates_to: str | None = None) -> bytes:
    """The fault envelope: Code/Value (+Subcode), Reason/Text in English, Detail when there is one."""
    env, body = _envelope(FAULT_ACTION, relates_to)
    f = etree.SubElement(body, q(SOAP12, "Fault"))
    code = etree.SubElement(f, q(SOAP12, "Code"))
    etree.SubElement(code, q(SOAP12, "Value")).text = f"s:{fault.code}"
    if fault.subcode is not None:
        ns, local = fault.subcode
        sub = etree.SubElement(code, q(SOAP12, "Subcode"))
        prefix = "a" if ns == WSA else "wstep" if ns == WSTEP else "x"
        value = etree.SubElement(sub, q(SOAP12, "Value"), nsmap={prefix: ns} if prefix != "a" else None)
        value.text = f"{prefix}:{local}"
    reason = etree.SubElement(f, q(SOAP12, "Reason"))
    txt = etree.SubElement(reason, q(SOAP12, "Text"))
    txt.set(q(XML_NS, "lang"), "en-US")
    txt.text = fault.reason
    if fault.detail is not None:
        etree.SubElement(f, q(SOAP12, "Detail")).append(fault.detail)
    return _serialize(env)
