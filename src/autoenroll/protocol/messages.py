"""The enrollment wire format (JSON over HTTPS, HTTP Negotiate), shared by the server and the agent.

One call per logon (what the agent uses):

    POST {requestpath}/logon     {"customeruri", "orgid"?, "domainname"?, "email"?, "cn"?, "csr"}
                                 -> {"principal", "email", "cn", "orgid", "customeruri",
                                     "status": "issued"|"pending", "certificate"?, "chain"?, "serial"?,
                                     "status_token"?, "request_id"?, "retry_after"?}
    POST {requestpath}/logon/status   {"status_token", "status": "installed"|"failed", "serial"?,
                                       "replaced_serial"?}  (no Kerberos: the token authorises it)
                                 -> {"status": "ok", "revoked_serial"?}

The three calls of older agents, still served:

    POST {requestpath}/sync      {"customeruri", "orgid"?, "domainname"?, "email"?}
                                 -> {"principal", "email", "cn", "orgid", "customeruri"}
    POST {requestpath}/enroll    {"customeruri", "orgid"?, "email", "cn"?, "csr"}
                                 -> {"request_id", "status": "issued"|"pending", "certificate"?, "chain"?,
                                     "serial"?, "retry_after"?}
    GET  {requestpath}/requests/{request_id}   -> same answer as enroll
    POST {requestpath}/status    {"customeruri", "status": "installed"|"failed", "serial"?, "replaced_serial"?}
                                 -> {"status": "ok", "revoked_serial"?}

Every refusal is {"error": {"code": N, "message": "<the guide's exact text>"}}. The field names
follow the guide's autoenroll.conf keys (customeruri, orgid, domainname).
"""

from __future__ import annotations

API_PREFIX = "/api/enroll"
SYNC = "sync"
ENROLL = "enroll"
REQUESTS = "requests"
STATUS = "status"
LOGON = "logon"
LOGON_STATUS = "logon/status"

STATUS_INSTALLED = "installed"
STATUS_FAILED = "failed"
REPORTED_STATUSES = (STATUS_INSTALLED, STATUS_FAILED)

REQUEST_ISSUED = "issued"
REQUEST_PENDING = "pending"

# How long the agent waits (guide errors 40 and 34).
SYNC_TIMEOUT_SECONDS = 40
CERTIFICATE_TIMEOUT_SECONDS = 120

# HTTP status per server error: the agent reads the JSON body, the status helps proxies and logs.
_BAD_REQUEST = {1, 6, 15, 21, 24, 26, 29}
_NOT_FOUND = {2, 7, 12, 22, 28}
_UNAVAILABLE = {13, 25}
_INTERNAL = {14, 23, 30}


def http_status(code: int) -> int:
    if code in _BAD_REQUEST:
        return 400
    if code in _NOT_FOUND:
        return 404
    if code in _UNAVAILABLE:
        return 503
    if code in _INTERNAL:
        return 500
    return 403  # refusals about identity and authorization: 3, 4, 5, 8-11, 16-20, 27


def error_body(code: int) -> dict[str, dict[str, object]]:
    from .errors import CATALOGUE

    return {"error": CATALOGUE[code].as_dict()}
