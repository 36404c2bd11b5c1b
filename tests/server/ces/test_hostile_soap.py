"""Hostile input against MS-XCEP and MS-WSTEP (Hypothesis): mutated envelopes and BinarySecurityToken bodies,
with real Kerberos tokens. The rule: a schema-valid SOAP answer, either a result or a fault that names the
sender or the guide's number; never the server's internal-error fault, never a traceback. Examples per
property: AUTOENROLL_HYPOTHESIS_EXAMPLES (default 200)."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import CEP_PATH, assert_valid, ces_path, fault_of, get_policies, make_csr, rst

HYPOTHESIS = settings(
    max_examples=int(os.environ.get("AUTOENROLL_HYPOTHESIS_EXAMPLES", "200")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=bool(os.environ.get("CI")),
)
INTERNAL = "The server was unable to process the request due to an internal error."


def assert_soap_answer(response, schema) -> None:
    assert response["Content-Type"].startswith("application/soap+xml"), response.content[:300]
    assert b"Traceback" not in response.content
    assert_valid(schema, response.content)
    if response.status_code != 200:
        assert fault_of(response.content)["reason"] != INTERNAL, response.content[:600]


def mutated(data: bytes):
    """Bytes flipped, cut, or replaced by a run of arbitrary bytes."""
    return st.one_of(
        st.integers(0, len(data) * 8 - 1).map(lambda bit: _flip(data, bit)),
        st.integers(0, len(data) - 1).map(lambda n: data[:n]),
        st.tuples(st.integers(0, len(data) - 1), st.binary(min_size=1, max_size=16)).map(
            lambda t: data[: t[0]] + t[1] + data[t[0] + len(t[1]) :]
        ),
    )


def _flip(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


@pytest.mark.parametrize("service", ["GetPolicies", "RequestSecurityToken"])
def test_mutated_envelopes(user1, ready, ca, schema, service):
    path, valid = (CEP_PATH, get_policies()) if service == "GetPolicies" else (ces_path(ca[1]), rst(make_csr()[1]))

    @HYPOTHESIS
    @given(body=mutated(valid))
    def check(body):
        assert_soap_answer(user1.post(path, body), schema)

    check()


def test_arbitrary_binary_security_tokens(user1, ready, ca, schema):
    _, csr = make_csr()
    path = ces_path(ca[1])

    @HYPOTHESIS
    @given(token=st.one_of(mutated(csr), st.binary(max_size=400), st.text(max_size=200)))
    def check(token):
        assert_soap_answer(user1.post(path, rst(token)), schema)

    check()
