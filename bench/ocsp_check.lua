-- wrk script of bench/revocation.py: POSTs the prepared OCSP requests in turn, one connection each, and
-- checks every answer: the certStatus that follows the CertID of our issuer must be the one expected for
-- the serial it names. Reads the data file named by OCSP_BENCH_DATA first, which defines `requests` (DER
-- strings), `expected` (serial hex -> "good" | "revoked" | "unknown"), `key_hash_tlv` (04 14 + the issuer
-- key's SHA-1) and `path`.

dofile(os.getenv("OCSP_BENCH_DATA"))

local statuses = { [0x80] = "good", [0xA1] = "revoked", [0x82] = "unknown" }
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  index, checked, wrong, first_wrong = 0, 0, 0, ""
  wrk.method, wrk.path = "POST", path
  wrk.headers["Content-Type"] = "application/ocsp-request"
  wrk.headers["Connection"] = "close"
end

function request()
  index = index % #requests + 1
  return wrk.format(nil, nil, nil, requests[index])
end

local function status_of(body)
  local at = string.find(body, key_hash_tlv, 1, true)
  if at == nil then return nil, nil end
  at = at + #key_hash_tlv
  if string.byte(body, at) ~= 0x02 then return nil, nil end
  local length = string.byte(body, at + 1)
  local serial = {}
  for i = at + 2, at + 1 + length do serial[#serial + 1] = string.format("%02x", string.byte(body, i)) end
  return table.concat(serial), statuses[string.byte(body, at + 2 + length)]
end

function response(status, headers, body)
  checked = checked + 1
  local serial, got = status_of(body)
  if status ~= 200 or serial == nil or expected[serial] ~= got then
    wrong = wrong + 1
    if first_wrong == "" then first_wrong = tostring(status) .. " " .. tostring(serial) .. " " .. tostring(got) end
  end
end

function done(summary, latency, requests)
  local c, w, first = 0, 0, ""
  for _, thread in ipairs(threads) do
    c = c + thread:get("checked")
    w = w + thread:get("wrong")
    if first == "" then first = thread:get("first_wrong") end
  end
  io.write(string.format("RESULT checked=%d wrong=%d completed=%d seconds=%.6f p50_us=%d p99_us=%d errors=%d\n",
    c, w, summary.requests, summary.duration / 1e6, latency:percentile(50), latency:percentile(99),
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.status + summary.errors.timeout))
  if first ~= "" then io.write("FIRST_WRONG " .. first .. "\n") end
end
