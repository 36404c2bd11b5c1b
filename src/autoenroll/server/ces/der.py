"""Just enough DER to unwrap what Windows and certmonger send: CMS SignedData around a PKCS#10 or CMC request.

cryptography parses certificates and CSRs but not CMS SignedData, and pulling pyasn1 into the server for
three structures is not worth it. Everything here reads untrusted bytes: lengths are checked against
their parents, nesting is bounded, and every failure is a DerError.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_DEPTH = 32


class DerError(ValueError):
    """The bytes are not the DER structure we expected."""


@dataclass(frozen=True)
class Tlv:
    """One element: its tag byte, the whole encoding and the value (content octets)."""

    tag: int
    raw: bytes
    value: bytes

    @property
    def constructed(self) -> bool:
        return bool(self.tag & 0x20)

    def children(self) -> list[Tlv]:
        if not self.constructed:
            raise DerError(f"element with tag {self.tag:#x} is not constructed")
        return read_all(self.value)


def read_one(data: bytes, pos: int = 0) -> tuple[Tlv, int]:
    """The element at pos and the position after it."""
    if pos + 2 > len(data):
        raise DerError("truncated element")
    tag = data[pos]
    if tag & 0x1F == 0x1F:
        raise DerError("multi-byte tags are not used in these structures")
    length = data[pos + 1]
    start = pos + 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4 or start + count > len(data):
            raise DerError("bad or indefinite length")
        length = int.from_bytes(data[start : start + count], "big")
        start += count
    end = start + length
    if end > len(data):
        raise DerError("element runs past its parent")
    return Tlv(tag, data[pos:end], data[start:end]), end


def read_all(data: bytes) -> list[Tlv]:
    out, pos = [], 0
    while pos < len(data):
        tlv, pos = read_one(data, pos)
        out.append(tlv)
    return out


def parse(data: bytes) -> Tlv:
    """The single element that data holds (nothing may follow it)."""
    tlv, end = read_one(data)
    if end != len(data):
        raise DerError("trailing bytes after the element")
    return tlv


def expect(tlv: Tlv, tag: int, what: str) -> Tlv:
    if tlv.tag != tag:
        raise DerError(f"{what}: expected tag {tag:#x}, found {tlv.tag:#x}")
    return tlv


def oid(tlv: Tlv) -> str:
    """Dotted form of an OBJECT IDENTIFIER."""
    expect(tlv, 0x06, "OBJECT IDENTIFIER")
    body = tlv.value
    if not body or body[-1] & 0x80:
        raise DerError("bad OBJECT IDENTIFIER")
    arcs, value = [], 0
    for byte in body:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    first = min(arcs[0] // 40, 2)
    return ".".join(str(a) for a in [first, arcs[0] - 40 * first, *arcs[1:]])


def integer(tlv: Tlv) -> int:
    expect(tlv, 0x02, "INTEGER")
    if not tlv.value:
        raise DerError("empty INTEGER")
    return int.from_bytes(tlv.value, "big", signed=True)


def encode(tag: int, content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:
        return bytes([tag, n]) + content
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + content


def encode_oid(dotted: str) -> bytes:
    arcs = [int(a) for a in dotted.split(".")]
    first = [40 * arcs[0] + arcs[1], *arcs[2:]]
    body = bytearray()
    for arc in first:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        body.extend(reversed(chunk))
    return encode(0x06, bytes(body))


def encode_int(value: int) -> bytes:
    return encode(0x02, value.to_bytes(max(1, (value.bit_length() + 8) // 8), "big", signed=True))


def seq(*items: bytes) -> bytes:
    return encode(0x30, b"".join(items))
