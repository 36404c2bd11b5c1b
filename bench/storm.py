"""Benchmark: a logon storm end to end, both enrollment protocols, with the limits and a peer in the same run.

    sudo .venv/bin/python bench/storm.py [--users 1000] [--concurrency 50] [--workers 2] [--server-cpus 0]

1. Starts a test-bed Samba AD DC on 127.0.0.8 and the real server (`serve`: Granian, N workers, HTTPS, built-in CA);
   creates 2 x U users in AD (one set per protocol) plus a few for the warm-up, and gets a TGT and a
   service ticket for each (not timed). With --server-cpus the server's process tree is pinned to those
   CPUs and this process (the load generator) to the others.
2. Main run, one pass per protocol, same concurrency: U first logons with the old three calls (sync ->
   enroll -> status), then U first logons of other users with the new call (logon -> logon/status with
   the status token). The keys, CSRs and SPNEGO tokens of a pass are made before it; every logon opens a
   new TLS connection and every answer is checked.
3. Renewal pass: N revoked certificates (--revoked) are put into the database while the server is idle,
   then every user logs on again with a new key through the new call and reports `installed` with
   `replaced_serial` (the server revokes the superseded certificate). Then one CRL fetch shows what the
   CRL costs off the request path.
4. A sweep over other concurrencies, logons arriving at fixed rates (an open loop, --arrivals: fractions of
   the rate measured), and a py-spy profile (new call, renewals).
5. Measures on the server's CPUs, in the same run: the CA key's signing rate, the in-process SPNEGO accept
   rate, and cfssl `serve` signing the same CSRs over HTTP.
6. Repeats the passes on PostgreSQL (a throw-away cluster from Debian's package) with 2 server processes.
7. Writes bench/results/storm-<time>.json and .png. Per pass: logons/s, p50/p95/p99, errors by step,
   HTTP status and the guide's error number, and CPU ms per logon of the server's process tree (and, of
   it, the watchers': CRLs and OCSP answers signed ahead, the audit sealer, off the request path), the
   load generator, Samba, PostgreSQL and everything else ("other": the machine is shared).

Every loop is bounded in count and time; everything listens on loopback; every process it starts is
stopped by its PID (PostgreSQL with pg_ctl, the DC with dc.stop(), the server with server.stop()).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import http.client
import json
import math
import os
import platform
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _storm_limits as limits  # noqa: E402
import _storm_load as load  # noqa: E402
import _storm_profile as profile  # noqa: E402
import _storm_sys as psys  # noqa: E402
import gssapi  # noqa: E402

from autoenroll.testbed import samba  # noqa: E402
from autoenroll.testbed.server import SERVER_HOST, start_server  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
CUSTOMER = "storm"
SERVICE = gssapi.Name(f"HTTP@{SERVER_HOST}", gssapi.NameType.hostbased_service)
# issue 11's goals, printed beside the measurements, not asserted
TARGET_RATE = 400.0  # complete logons/s with the server pinned to one core
TARGET_P99_MS = 50.0
TARGET_SERVER_MS = 2.5  # server CPU per complete logon
TARGET_CFSSL = 1.0
ARRIVAL_THREADS = 300  # logons in flight at most: enough that arrivals never wait for the generator
MB = 1024 * 1024
PROTOCOL_NAMES = {"old": "old: sync -> enroll -> status", "new": "new: logon -> logon/status"}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--users", type=int, default=1000, help="AD users per protocol, one first logon each (max 10,000)")
    p.add_argument("--concurrency", type=int, default=50, help="concurrent clients of each pass (max 500)")
    p.add_argument(
        "--workers", type=int, help="workers of the SQLite server (default: one per --server-cpus CPU, else 2)"
    )
    p.add_argument(
        "--server-cpus", help="pin the server's process tree to these CPUs (taskset -c syntax) and the generator "
        "to the others",
    )  # fmt: skip
    p.add_argument("--revoked", type=int, default=100_000, help="revoked certificates in the database for renewals")
    p.add_argument("--sweep", default="1,10,25,100", help="other concurrencies for the chart (comma-separated)")
    p.add_argument("--sweep-seconds", type=float, default=4.0, help="time limit of each sweep point")
    p.add_argument(
        "--arrivals", default="0.25,0.5,0.75", help="open-loop rates: fractions of the measured rate (comma-separated)"
    )
    p.add_argument("--arrival-seconds", type=float, default=8.0, help="length of each arrivals point")
    p.add_argument("--time-limit", type=float, default=75.0, help="time limit of each pass, seconds")
    p.add_argument("--profile-seconds", type=float, default=5.0, help="py-spy burst (0: no profile)")
    p.add_argument("--pg-servers", type=int, default=2, help="server processes on PostgreSQL (0: skip PostgreSQL)")
    p.add_argument("--pg-workers", type=int, default=1, help="workers per PostgreSQL server process")
    p.add_argument(
        "--pg-old", action=argparse.BooleanOptionalAction, default=True, help="old protocol on PostgreSQL too"
    )
    p.add_argument("--no-cfssl", action="store_true", help="skip the cfssl peer")
    p.add_argument("--per-call", action="store_true", help="old protocol: one TLS connection per call")
    p.add_argument("--ip", default="127.0.0.8", help="loopback address of the test DC")
    p.add_argument("--out", type=Path, default=RESULTS, help="where the JSON and PNG go")
    args = p.parse_args(argv)
    if not 1 <= args.users <= 10_000 or not 1 <= args.concurrency <= 500:
        p.error("--users must be 1..10000 and --concurrency 1..500")
    if not 0 <= args.revoked <= 1_000_000:
        p.error("--revoked must be 0..1000000")
    args.sweep = sorted({int(c) for c in args.sweep.split(",") if c.strip()} - {args.concurrency})
    if any(not 1 <= c <= 500 for c in args.sweep):
        p.error("sweep concurrencies must be 1..500")
    args.arrivals = sorted({float(f) for f in args.arrivals.split(",") if f.strip()})
    if any(not 0 < f <= 1 for f in args.arrivals) or not 0 < args.arrival_seconds <= 600:
        p.error("--arrivals fractions must be in (0, 1] and --arrival-seconds in (0, 600]")
    args.cpus = None
    if args.server_cpus:
        try:
            server = psys.parse_cpus(args.server_cpus)
        except ValueError:
            p.error(f"--server-cpus {args.server_cpus!r}: a list like 0 or 0,1 or 0-1")
        available = os.sched_getaffinity(0)
        if not server or not server <= available:
            p.error(f"--server-cpus {args.server_cpus}: this process may use CPUs {sorted(available)}")
        args.cpus = {"server": server, "generator": (available - server) or available}
    if args.workers is None:  # one process per core: a second on the same core only adds contention and halves
        args.workers = len(args.cpus["server"]) if args.cpus else 2  # TLS resumption (a ticket key each)
    return args


# ---- figures ----------------------------------------------------------------------------------------------


def pct(values: list[float], q: int) -> float | None:
    """q-th percentile in ms (linear interpolation); None without data."""
    if not values:
        return None
    if len(values) == 1:
        return values[0] * 1000
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] * 1000


def run_summary(label: str, result: load.LoadResult, meter: psys.CPUMeter | None = None, rss=None) -> dict:
    out = {
        "label": label,
        "protocol": result.protocol,
        "concurrency": result.concurrency,
        "logons": result.done,
        "errors": dict(result.errors),
        "error_count": sum(result.errors.values()),
        "seconds": round(result.elapsed, 3),
        "logons_per_s": round(result.rate, 2),
        "stopped_by_time_limit": result.stopped_by_time,
        "latency_ms": {
            step: {f"p{q}": pct(v, q) for q in (50, 95, 99)} | {"max": max(v) * 1000 if v else None}
            for step, v in result.timings.items()
        },
        "tls": {"connections": result.tls.connections, "resumed": result.tls.resumed},
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
    }
    if meter is not None:
        out["cpu_seconds"] = {k: round(v, 2) for k, v in meter.result.items()}
        out["cpu_cores"] = {k: round(v, 3) for k, v in meter.shares().items()}
        if result.done:
            out["cpu_ms_per_logon"] = {k: round(v * 1000 / result.done, 2) for k, v in meter.result.items()}
    if rss is not None:
        out["worker_rss_mb"] = [round(r / MB, 1) for r in rss]
    return out


def fmt(value: float | None, spec: str = "7.1f") -> str:
    return format(value, spec) if value is not None else "      -"


def generator_verdict(s: dict, generator_cpus: int) -> str | None:
    """Whether the Python load generator may be what limits the pass (None: it is not)."""
    per, cores = s.get("cpu_ms_per_logon", {}), s.get("cpu_cores", {})
    gen, srv = per.get("load generator"), per.get("server")
    if gen is None or not srv:
        return None
    busy = cores.get("load generator", 0) / max(1, generator_cpus)
    if busy > 0.8 or gen > 0.5 * srv:
        return (
            f"the Python load generator may be the limit: {gen:.1f} ms CPU per logon against the server's "
            f"{srv:.1f} ms, {busy * 100:.0f} % of its {generator_cpus} CPU(s) busy"
        )
    return None


def print_run(s: dict, generator_cpus: int) -> None:
    print(
        f"\n[{s['label']}] {s['logons']} logons, {s['error_count']} errors, {s['seconds']:.1f} s, "
        f"concurrency {s['concurrency']}: {s['logons_per_s']:.1f} logons/s"
        + ("  (stopped by the time limit)" if s["stopped_by_time_limit"] else "")
    )
    for step, q in s["latency_ms"].items():
        print(f"    {step:12s} p50 {fmt(q['p50'])} ms   p95 {fmt(q['p95'])} ms   p99 {fmt(q['p99'])} ms")
    for key, n in sorted(s["errors"].items(), key=lambda kv: -kv[1]):
        print(f"    error x{n}: {key}")
    tls = s["tls"]
    print(f"    TLS connections {tls['connections']}, resumed {tls['resumed']}")
    if "cpu_cores" in s:
        cores = s["cpu_cores"]
        parts = [f"{k} {cores[k]:.2f}" for k in cores if k != "machine"]
        print(f"    CPU in cores (of {os.cpu_count()}): " + ", ".join(parts) + f"; machine {cores['machine']:.2f}")
        if "cpu_ms_per_logon" in s:
            per = s["cpu_ms_per_logon"]
            print("    CPU ms per logon: " + ", ".join(f"{k} {v:.2f}" for k, v in per.items()))
    if "prepared_ms_per_logon" in s:
        print(f"    made before the pass (not timed): {s['prepared_ms_per_logon']:.2f} ms generator CPU per logon")
    if "worker_rss_mb" in s:
        print("    worker RSS (MB): " + ", ".join(f"{r:.0f}" for r in s["worker_rss_mb"]))
    verdict = generator_verdict(s, generator_cpus)
    s["generator_may_limit"] = verdict is not None
    if verdict:
        print(f"    NOTE: {verdict}")


# ---- phases -----------------------------------------------------------------------------------------------


class Target:
    """The server(s) under test on one database: clients, the process groups to meter, the masters."""

    def __init__(self, db: str, label: str, clients, groups: dict, masters: list[int], generator_cpus: int):
        self.db, self.label, self.clients, self.groups, self.masters = db, label, clients, groups, masters
        self.generator_cpus = generator_cpus


def run_pass(t: Target, name: str, protocol: str, users, concurrency: int, time_limit: float, *, renew: bool) -> dict:
    """One logon per user through `protocol`, everything it sends made first; metered and printed."""
    jobs, prep_cpu = load.prepare(users, protocol, SERVICE, renew=renew)
    meter = psys.CPUMeter(t.groups).start()
    result = load.run_load(t.clients, jobs, protocol, concurrency, time_limit)
    meter.stop()
    rss = [r for m in t.masters for r in psys.worker_rss(m)]
    kind = "renewal: new key, replaced_serial reported" if renew else "first logon"
    label = f"{t.db} {name}, {PROTOCOL_NAMES[protocol]}, {kind}"
    summary = run_summary(label, result, meter, rss) | {"db": t.db, "pass": name, "kind": kind}
    summary["prepared_ms_per_logon"] = round(prep_cpu * 1000 / max(1, len(jobs)), 3)
    print_run(summary, t.generator_cpus)
    return summary


def sweep(t: Target, pool, concurrencies, seconds: float, rate_hint: float) -> list[dict]:
    """Renewals through the new call at other concurrencies (for the chart); a user at most once per point."""
    out, offset = [], 0
    for c in concurrencies:
        n = min(len(pool), math.ceil(max(rate_hint, 20.0) * seconds * 1.5) + c)
        users = [pool[(offset + i) % len(pool)] for i in range(n)]
        offset += n
        jobs, _ = load.prepare(users, "new", SERVICE, renew=True)
        meter = psys.CPUMeter(t.groups).start()
        result = load.run_load(t.clients, jobs, "new", c, seconds)
        meter.stop()
        s = run_summary(f"{t.db} sweep", result, meter) | {"db": t.db, "pass": "sweep", "kind": "renewal"}
        lat = s["latency_ms"]["logon"]
        srv = s.get("cpu_ms_per_logon", {}).get("server")
        print(
            f"  {t.db} sweep c={c:<4d} {s['logons_per_s']:7.1f}/s  logon p50 {fmt(lat['p50'])} p99 {fmt(lat['p99'])} ms"
            f"  errors {s['error_count']}  server {fmt(srv, '.2f')} ms/logon"
            + ("  (all prepared logons done before the time limit)" if not result.stopped_by_time else "")
        )
        out.append(s)
    return out


def arrivals(t: Target, pool, fractions, seconds: float, rate_hint: float) -> list[dict]:
    """Renewals through the new call arriving at fixed rates, `fractions` of `rate_hint`, for `seconds` each:
    the latency a logon sees when the server is not saturated (a closed loop of c clients always waits
    c / rate by Little's law)."""
    out, offset = [], len(pool) // 2  # other users than the sweep's first points
    for fraction in fractions:
        rate = max(1.0, fraction * rate_hint)
        n = min(len(pool), max(1, round(rate * seconds)))
        users = [pool[(offset + i) % len(pool)] for i in range(n)]
        offset += n
        jobs, _ = load.prepare(users, "new", SERVICE, renew=True)
        meter = psys.CPUMeter(t.groups).start()
        result = load.run_load(t.clients, jobs, "new", ARRIVAL_THREADS, seconds * 3, rate=rate)
        meter.stop()
        s = run_summary(f"{t.db} arrivals", result, meter) | {
            "db": t.db, "pass": "arrivals", "kind": "renewal", "arrival_rate": round(rate, 1), "fraction": fraction,
        }  # fmt: skip
        lat = s["latency_ms"]["logon"]
        srv = s.get("cpu_ms_per_logon", {}).get("server")
        print(
            f"  {t.db} arrivals {rate:6.1f}/s ({fraction:.0%} of {rate_hint:.0f}/s): {s['logons_per_s']:7.1f}/s done  "
            f"logon p50 {fmt(lat['p50'])} p95 {fmt(lat['p95'])} p99 {fmt(lat['p99'])} ms  errors {s['error_count']}"
            f"  server {fmt(srv, '.2f')} ms/logon"
        )
        s["slowest"] = [
            {"at_s": round(at, 2), "ms": round(total * 1000, 1), "calls_ms": [round(c * 1000, 1) for c in calls]}
            for at, total, calls in result.slowest
        ]
        slow = [f"{x['ms']:.0f} ms at +{x['at_s']:.1f} s ({' + '.join(map(str, x['calls_ms']))})" for x in s["slowest"]]
        began = dt.datetime.fromtimestamp(result.began, dt.UTC)
        s["began_utc"] = began.isoformat()
        print(f"    slowest (logon call + status call; the point began {began:%H:%M:%S} UTC): " + ", ".join(slow))
        out.append(s)
    return out


def warm_up(t: Target, users) -> None:
    """Every worker thread opens its LDAP connection, loads the keytab and decrypts the CA key (not timed)."""
    for protocol in ("new", "old"):
        jobs, _ = load.prepare(users, protocol, SERVICE, renew=protocol == "old")
        result = load.run_load(t.clients, jobs, protocol, min(8, len(jobs)), 60)
        if result.errors:
            raise RuntimeError(f"warm-up ({protocol} protocol) failed: {dict(result.errors)}")


def server_context(root_ca: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(root_ca))


def prefetch_service_tickets(users, threads: int) -> float:
    """The TGS exchange for HTTP/ccm.test.com, once per user (cached in the user's in-memory ccache)."""
    spnego = gssapi.OID.from_int_seq("1.3.6.1.5.5.2")

    def one(user):
        gssapi.SecurityContext(name=SERVICE, creds=user.creds, usage="initiate", mech=spnego).step()

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(one, users))
    return len(users) / (time.perf_counter() - t0)


def pin(args, masters: list[int], what: str) -> list[dict]:
    """Pin the server trees to --server-cpus (twice: workers forked meanwhile) and print where each runs."""
    if args.cpus:
        psys.pin_tree(masters, args.cpus["server"])
        time.sleep(0.5)
        psys.pin_tree(masters, args.cpus["server"])
    tree = psys.describe_tree(masters)
    print(f"{what} processes and their CPUs:")
    for p in tree:
        print(f"    pid {p['pid']:<7d} cpus {p['cpus']:<5s} {p['cmd'][:90]}")
    return tree


def insert_revoked(server, n: int, db: str) -> dict:
    if n <= 0:
        return {"inserted": 0}
    count, seconds = psys.insert_revoked(server, n)
    print(f"\n{db}: {n} revoked certificates inserted in {seconds:.1f} s (server idle); the CA has {count} revoked")
    signed, settle_seconds = psys.settle(server)
    print(
        f"{db}: {signed} OCSP answers signed ahead and the CRL made in {settle_seconds:.1f} s (server idle): what "
        "the watcher had done long before for rows revoked over time, not a cost of the renewals"
    )
    return {
        "inserted": n,
        "revoked_of_ca": count,
        "seconds": round(seconds, 1),
        "settled": {"ocsp_signed_ahead": signed, "seconds": round(settle_seconds, 1)},
    }


def crl_fetch(server, t: Target, ca_name: str) -> dict | None:
    """GET the CRL from the publication listener once after the renewals: the regeneration they left due."""
    from cryptography import x509

    meter = psys.CPUMeter(t.groups).start()
    t0 = time.perf_counter()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", server.publication_port, timeout=120)
        conn.request("GET", f"/crl/{ca_name}.crl")
        answer = conn.getresponse()
        der = answer.read()
        conn.close()
    except (OSError, http.client.HTTPException) as exc:
        print(f"CRL fetch failed: {type(exc).__name__}: {exc}")
        return None
    wall = time.perf_counter() - t0
    meter.stop()
    if answer.status != 200:
        print(f"CRL fetch: HTTP {answer.status}")
        return {"http_status": answer.status}
    crl = x509.load_der_x509_crl(der)
    out = {
        "entries": len(crl),
        "bytes": len(der),
        "seconds": round(wall, 3),
        "server_cpu_s": round(meter.result.get("server", 0), 3),
        "number": crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number,
    }
    print(
        f"{t.db}: CRL fetch after the renewals: #{out['number']}, {out['entries']} entries, {out['bytes']} bytes, "
        f"{wall:.2f} s, server CPU {out['server_cpu_s']:.2f} s (the regeneration, off the logon path)"
    )
    return out


def run_profile(t: Target, master: int, pool, concurrency: int, seconds: float, rate_hint: float, out: Path):
    if seconds <= 0 or profile.py_spy() is None:
        print("\nprofile: skipped" + ("" if seconds <= 0 else " (py-spy is not installed)"))
        return None
    n = min(len(pool), math.ceil(max(rate_hint, 20.0) * seconds * 1.5) + concurrency)
    jobs, _ = load.prepare(pool[-n:], "new", SERVICE, renew=True)
    gil_out = out.with_name(out.name.replace(".pyspy.txt", ".gil.pyspy.txt"))
    spies = [profile.start(master, seconds + 1, out), profile.start(master, seconds + 1, gil_out, gil=True)]
    time.sleep(0.5)
    result = load.run_load(t.clients, jobs, "new", concurrency, seconds)
    errors = []
    for spy in spies:
        try:
            _, err = spy.communicate(timeout=seconds + 30)
        except subprocess.TimeoutExpired:
            spy.kill()
            _, err = spy.communicate(timeout=10)
        errors.append(err.decode(errors="replace")[-300:])
    if not out.exists() or not gil_out.exists():
        print(f"\nprofile: py-spy wrote nothing: {errors}")
        return None
    report = profile.analyse(out)
    report["gil"] = profile.analyse(gil_out)
    report["logons_during_profile"] = result.done
    report["raw_files"] = [out.name, gil_out.name]
    return report


def print_profile(report: dict, label: str, brief: bool = False) -> None:
    gil = report["gil"]
    print(
        f"\nprofile of the server's workers, {label}, new call, renewals (py-spy: {report['samples']} samples of "
        f"busy threads = wall, incl. C code and waits; {gil['samples']} samples holding the GIL = Python CPU):"
    )
    print("     wall     GIL  part of a request")
    gil_parts = dict(gil["parts"])
    for name, share in report["parts"]:
        print(f"    {share * 100:5.1f} % {gil_parts.get(name, 0.0) * 100:5.1f} %  {name}")
    if brief:
        return
    for title, rep in (("busy threads (wall)", report), ("holding the GIL (Python CPU)", gil)):
        print(f"  top frames, self time, {title}:")
        for name, share in rep["self"][:10]:
            print(f"    {share * 100:5.1f} %  {name}")
    print("  top frames of autoenroll / gssapi / ssl, inclusive, holding the GIL:")
    for name, share in gil["inclusive"][:12]:
        print(f"    {share * 100:5.1f} %  {name}")


def database_passes(args, t: Target, server, users_old, users_new, *, old: bool, stamp: str) -> dict:
    """Main run (old then new protocol), renewals with revoked certificates present, CRL fetch, sweep, profile."""
    runs, extra = [], {}
    if old:
        runs.append(
            run_pass(t, "main", "old", users_old, args.concurrency, args.time_limit, renew=False) | {"main": True}
        )
    runs.append(run_pass(t, "main", "new", users_new, args.concurrency, args.time_limit, renew=False) | {"main": True})
    everyone = (users_old if old else []) + users_new
    extra["revoked"] = insert_revoked(server, args.revoked, t.db)
    runs.append(
        run_pass(t, "renewal", "new", everyone, args.concurrency, args.time_limit, renew=True)
        | {"revoked_in_database": extra["revoked"].get("revoked_of_ca", 0)}
    )
    extra["crl_fetch"] = crl_fetch(server, t, psys.issuing_ca_name(server)) if args.revoked > 0 else None
    rate_hint = max(r["logons_per_s"] for r in runs)
    runs += sweep(t, everyone, args.sweep, args.sweep_seconds, rate_hint)
    runs += arrivals(t, everyone, args.arrivals, args.arrival_seconds, rate_hint)
    extra["profile"] = run_profile(
        t, t.masters[0], everyone, args.concurrency, args.profile_seconds, rate_hint,
        args.out / f"storm-{stamp}-{t.db}.pyspy.txt",
    )  # fmt: skip
    extra["runs"] = runs
    return extra


def keep_log(workdir: Path, dest: Path, limit: int = 20_000) -> None:
    """The server logs without access and INFO lines (warnings, errors, tracebacks) but with the watchers'
    (when each round ran, to set beside the slowest logons), kept past the temp dir."""
    kept = []
    for log in sorted(workdir.glob("server*.log")):
        with contextlib.suppress(OSError), open(log, errors="replace") as f:
            for line in f:
                if len(kept) >= limit:
                    break
                watcher = " INFO autoenroll.watch: " in line
                if line.startswith("127.0.0.1 - ") or (" INFO " in line and not watcher) or "[INFO]" in line:
                    continue
                kept.append(f"{log.name}: {line}")
    if kept:
        dest.write_text("".join(kept))


# ---- main -------------------------------------------------------------------------------------------------


def main(argv=None) -> int:
    args = parse_args(argv)
    t_start = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    result: dict = {
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "cpus"},
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "kernel": platform.release(),
            "load_average_at_start": os.getloadavg(),
        },
        "runs": [],
        "db_labels": {},
        "databases": {},
    }
    if args.cpus:
        result["pinning"] = {k: sorted(v) for k, v in args.cpus.items()}
    generator_cpus = len(args.cpus["generator"]) if args.cpus else (os.cpu_count() or 1)
    ok, why = samba.available()
    if not ok:
        print(f"cannot run: {why}")
        return 2

    with tempfile.TemporaryDirectory(prefix="autoenroll-storm-") as tmp:
        work = Path(tmp)
        dc = server = pg = cfssl = server_future = None
        pg_servers: list = []
        extra: list = []
        background = ThreadPoolExecutor(max_workers=1)
        try:
            # ---- setup (not timed) ----------------------------------------------------------------
            t0 = time.perf_counter()
            dc = samba.start(work / "dc", ip=args.ip)
            os.environ.update(dc.env())  # this process is every user's machine: find the KDC, own rcache dir
            (work / "dc" / "rcache").mkdir(exist_ok=True)
            setup = {"dc_start_s": round(time.perf_counter() - t0, 2)}
            n_warm = max(8, 4 * max(args.workers, args.pg_servers * args.pg_workers))
            names = [f"storm{i:05d}" for i in range(2 * args.users + n_warm)]
            t0 = time.perf_counter()
            # the server initialises and starts while Samba makes the users (both only need the DC)
            server_future = background.submit(
                start_server, work / "server", dc, customer=CUSTOMER, workers=args.workers
            )
            load.create_users(dc, names, connections=4, time_limit=300)
            setup["users_per_s"] = round(len(names) / (time.perf_counter() - t0), 1)
            users = [load.BenchUser(sam, f"{sam}@{samba.DOMAIN}") for sam in names]
            users_old, users_new, users_warm = users[: args.users], users[args.users : 2 * args.users], users[-n_warm:]
            t0 = time.perf_counter()
            load.get_tickets(users, samba.REALM, threads=4, time_limit=180)
            setup["tgt_per_s"] = round(len(users) / (time.perf_counter() - t0), 1)
            setup["service_tickets_per_s"] = round(prefetch_service_tickets(users, threads=4), 1)
            server = server_future.result(timeout=300)
            setup["seconds"] = round(time.perf_counter() - t_start, 1)
            result["setup"] = setup
            print(
                f"setup ({setup['seconds']} s, not timed): DC on {dc.ip}; {len(users)} users ({args.users} per "
                f"protocol + {n_warm} for the warm-up) at {setup['users_per_s']}/s, TGTs at {setup['tgt_per_s']}/s, "
                f"service tickets at {setup['service_tickets_per_s']}/s; server {server.url} with {args.workers} "
                f"workers; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
            )

            # ---- SQLite -------------------------------------------------------------------------------
            result["pinning_tree_sqlite"] = pin(args, [server.process.pid], "server (SQLite)")
            if args.cpus:
                psys.pin_self(args.cpus["generator"])
                print(
                    f"load generator (pid {os.getpid()}) pinned to CPUs {psys.affinity(os.getpid())}; "
                    f"Samba and PostgreSQL not pinned"
                )
            label = f"SQLite, 1 server process x {args.workers} workers"
            result["db_labels"]["sqlite"] = label
            ctx = server_context(server.root_ca)
            clients = [load.Client(server.port, ctx, CUSTOMER, args.per_call)]
            groups = {"server": [server.process.pid], "samba": [dc.pid]}
            t = Target("sqlite", label, clients, groups, [server.process.pid], generator_cpus)
            warm_up(t, users_warm)
            sqlite = database_passes(args, t, server, users_old, users_new, old=True, stamp=stamp)
            result["runs"] += sqlite.pop("runs")
            result["databases"]["sqlite"] = sqlite

            # ---- limits and the peer, on the server's CPUs, with the server stopped (its CRL watcher would
            # otherwise share those CPUs); they need only its CA files and the keytab ----------------------
            server.stop()
            if args.cpus:
                psys.pin_self(args.cpus["server"])  # the in-process limits run where the server ran
            server_cpus = len(args.cpus["server"]) if args.cpus else (os.cpu_count() or 1)
            passphrase = (server.workdir / "ca-passphrase").read_bytes().strip()
            sign = limits.signing_rates(server.data_dir / "ca", passphrase, f"http://{SERVER_HOST}", server_cpus)
            accept = limits.spnego_accept_rate([u.creds for u in users[:50]], SERVICE, dc.keytab)
            if args.cpus:
                psys.pin_self(args.cpus["generator"])
            result["limits"] = {"signing": sign, "spnego": accept, "on_cpus": server_cpus}
            if not args.no_cfssl:
                cfssl = psys.Cfssl(
                    server.issuing_ca, server.data_dir / "ca" / "issuing-ca.key", server.workdir / "ca-passphrase"
                )
                cfssl.start()
                if args.cpus:
                    psys.pin_tree([cfssl.process.pid], args.cpus["server"])
                csrs = [load.make_csr(u.sam)[0] for u in users[: min(len(users), 5000)]]
                load.run_cfssl(cfssl.port, csrs[:100], 8, 30)  # warm-up
                meter = psys.CPUMeter({"cfssl": [cfssl.process.pid]}).start()
                peer = load.run_cfssl(cfssl.port, csrs, args.concurrency, args.time_limit)
                meter.stop()
                s = run_summary("cfssl serve (HTTP, same CA key)", peer, meter)
                result["cfssl"] = {
                    "version": cfssl.version,
                    "cpus": psys.affinity(cfssl.process.pid),
                    "signs_per_s": round(peer.rate, 1),
                    "signed": peer.done,
                    "errors": dict(peer.errors),
                    "latency_ms": s["latency_ms"]["sign"],
                    "cpu_cores": s["cpu_cores"],
                    "cpu_ms_per_sign": s.get("cpu_ms_per_logon"),
                    # one Python process drives cfssl: near its CPUs' capacity, cfssl's figure is a lower bound
                    "generator_bound": s["cpu_cores"].get("load generator", 0) > 0.85 * generator_cpus,
                }
                cfssl.stop()
                cfssl = None

            # ---- PostgreSQL: the same with 2 server processes ------------------------------------------
            if args.pg_servers > 0:
                for u in users:
                    u.serial = ""  # a new database: nobody holds a certificate there
                pg = psys.Postgres().start()
                result["postgresql"] = {"version": pg.version}
                pg_servers.append(
                    start_server(
                        work / "server-pg", dc, customer=CUSTOMER, workers=args.pg_workers,
                        env={"AUTOENROLL_DATABASE_URL": pg.url},
                    )
                )  # fmt: skip
                first = pg_servers[0]
                extra = [psys.start_extra_instance(first, args.pg_workers) for _ in range(args.pg_servers - 1)]
                ctx = server_context(first.root_ca)
                ports = [first.port] + [e.port for e in extra]
                clients = [load.Client(port, ctx, CUSTOMER, args.per_call) for port in ports]
                masters = [first.process.pid] + [e.process.pid for e in extra]
                result["pinning_tree_postgresql"] = pin(args, masters, "server (PostgreSQL)")
                groups = {"server": masters, "samba": [dc.pid], "postgres": [pg.pid]}
                label = f"PostgreSQL, {args.pg_servers} server processes x {args.pg_workers} workers"
                result["db_labels"]["postgresql"] = label
                t = Target("postgresql", label, clients, groups, masters, generator_cpus)
                warm_up(t, users_warm)
                pgres = database_passes(args, t, first, users_old, users_new, old=args.pg_old, stamp=stamp)
                result["runs"] += pgres.pop("runs")
                result["databases"]["postgresql"] = pgres
        finally:
            if server is None and server_future is not None:
                with contextlib.suppress(Exception):
                    server = server_future.result(timeout=300)
            background.shutdown(wait=True)
            for name, s in (("sqlite", server), ("postgresql", pg_servers[0] if pg_servers else None)):
                if s is not None:
                    keep_log(s.workdir, args.out / f"storm-{stamp}-{name}-server.log")
            if cfssl is not None:
                cfssl.stop()
            for e in extra:
                e.stop()
            for s in [server, *pg_servers]:
                if s is not None:
                    s.stop()
            if pg is not None:
                pg.stop()
            if dc is not None:
                dc.stop()

    result["wall_seconds"] = round(time.perf_counter() - t_start, 1)
    result["machine"]["load_average_at_end"] = os.getloadavg()
    summarize(result, args)
    path = args.out / f"storm-{stamp}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    png = args.out / f"storm-{stamp}.png"
    drawn = chart(result, png)
    print(f"\nwrote {path}" + (f" and {png}" if drawn else ""))
    print(f"total wall time {result['wall_seconds']:.0f} s")
    return 0


def summarize(result: dict, args) -> None:
    passes = [r for r in result["runs"] if r.get("pass") in ("main", "renewal")]
    print(
        "\n==== passes (CPU in ms per complete logon; 'watch': the server's watchers, 'kern': the server's time in"
        " the kernel, both part of 'server'; 'other': the rest of the shared machine) ===="
    )
    print(
        f"{'database':10s} {'protocol':4s} {'pass':22s} {'logons':>6s} {'/s':>7s} {'p50':>7s} {'p95':>7s} {'p99':>7s}"
        f" {'server':>7s} {'watch':>6s} {'kern':>6s} {'gen':>6s} {'samba':>6s} {'pg':>6s} {'other':>6s} {'errors':>6s}"
    )
    for r in passes:
        lat, per = r["latency_ms"]["logon"], r.get("cpu_ms_per_logon", {})
        what = "first logon" if r["pass"] == "main" else f"renewal, {r.get('revoked_in_database', 0)} revoked"
        print(
            f"{r['db']:10s} {r['protocol']:4s} {what:22s} {r['logons']:6d} {r['logons_per_s']:7.1f} "
            f"{fmt(lat['p50'])} {fmt(lat['p95'])} {fmt(lat['p99'])} {fmt(per.get('server'), '7.2f')} "
            f"{fmt(per.get(psys.SERVER_WATCHERS), '6.2f')} {fmt(per.get(psys.SERVER_KERNEL), '6.2f')} "
            f"{fmt(per.get('load generator'), '6.2f')} "
            f"{fmt(per.get('samba'), '6.2f')} {fmt(per.get('postgres'), '6.2f')} {fmt(per.get('other'), '6.2f')} "
            f"{r['error_count']:6d}"
        )
    sign = result["limits"]["signing"]
    procs = max(sign)
    accept = result["limits"]["spnego"]["accepts_per_s"]
    print(f"\n==== limits and peer, measured in this run on {result['limits']['on_cpus']} server CPU(s) ====")
    for n, r in sorted(sign.items()):
        print(
            f"CA key ({n} process{'es' if n > 1 else ''}): {r['raw_signatures_per_s']:9.0f} raw signatures/s, "
            f"{r['certificates_per_s']:7.0f} S/MIME certificates/s (build + sign + verify)"
        )
    print(f"in-process SPNEGO accepts/s (1 thread): {accept:9.0f}")
    cf = result.get("cfssl")
    if cf:
        lat, cores = cf["latency_ms"], cf["cpu_cores"]
        print(
            f"cfssl serve {cf['version']} on CPUs {cf['cpus']}: {cf['signs_per_s']:.0f} signs/s at concurrency "
            f"{args.concurrency} (p50 {fmt(lat['p50'], '.1f')} / p99 {fmt(lat['p99'], '.1f')} ms, "
            f"{sum(cf['errors'].values())} errors; cores: cfssl {cores.get('cfssl', 0):.2f}, "
            f"load generator {cores.get('load generator', 0):.2f}, other {cores.get('other', 0):.2f})"
        )
        if cf["generator_bound"]:
            print("  (the Python load generator was the limit there: cfssl's figure is a lower bound)")

    main_new = next((r for r in passes if r["db"] == "sqlite" and r["protocol"] == "new" and r["pass"] == "main"), None)
    if main_new is None:
        return
    rate = main_new["logons_per_s"]
    p99 = main_new["latency_ms"]["logon"]["p99"] or float("inf")
    server_ms = main_new.get("cpu_ms_per_logon", {}).get("server", float("inf"))
    ratios = {
        "ours_over_certificate_limit": rate / sign[procs]["certificates_per_s"],
        "ours_over_spnego_accept_limit": rate / accept,
    }
    if cf and cf["signs_per_s"]:
        ratios["ours_over_cfssl"] = rate / cf["signs_per_s"]
    result["ratios"] = {k: round(v, 4) for k, v in ratios.items()}
    one_core = bool(args.cpus) and len(args.cpus["server"]) == 1
    targets = {
        "server_cpu_ms_per_logon": {
            "target": TARGET_SERVER_MS,
            "measured": server_ms,
            "met": server_ms <= TARGET_SERVER_MS,
        },
        "logons_per_s_server_on_one_core": {
            "target": TARGET_RATE,
            "measured": rate,
            "met": one_core and rate >= TARGET_RATE,
            "server_on_one_core": one_core,
        },
        "p99_ms_at_concurrency": {"target": TARGET_P99_MS, "measured": p99, "met": p99 < TARGET_P99_MS},
    }
    if "ours_over_cfssl" in ratios:
        r = ratios["ours_over_cfssl"]
        targets["ours_over_cfssl"] = {"target": TARGET_CFSSL, "measured": round(r, 3), "met": r >= TARGET_CFSSL}
    result["targets"] = targets

    def verdict(key: str) -> str:
        return "met" if targets[key]["met"] else "NOT met"

    print("\n==== issue 11's goals (SQLite, new call, first logons; printed, not asserted) ====")
    print(
        f"server CPU per logon     {server_ms:8.2f} ms target <= {TARGET_SERVER_MS} ms  "
        f"{verdict('server_cpu_ms_per_logon')}"
    )
    print(
        f"logons/s                 {rate:8.1f}    target >= {TARGET_RATE:.0f} on one server core   "
        f"{verdict('logons_per_s_server_on_one_core')}"
        + ("" if one_core else "  (the server was not pinned to one core: --server-cpus 0)")
    )
    print(
        f"logon p99 at c={args.concurrency:<3d}      {p99:8.1f} ms target < {TARGET_P99_MS:.0f} ms   "
        f"{verdict('p99_ms_at_concurrency')}"
    )
    if "ours_over_cfssl" in targets:
        m = targets["ours_over_cfssl"]["measured"]
        print(f"ours / cfssl             {m:8.3f}    target >= {TARGET_CFSSL:.1f}x     {verdict('ours_over_cfssl')}")
    print(
        f"(a closed loop of {args.concurrency} clients waits {args.concurrency} / rate on average, Little's law: "
        f"{args.concurrency * 1000 / TARGET_RATE:.0f} ms at {TARGET_RATE:.0f}/s; logons arriving at a fixed rate:)"
    )
    for r in result["runs"]:
        if r.get("pass") == "arrivals" and r["db"] == "sqlite":
            lat = r["latency_ms"]["logon"]
            print(
                f"  renewals arriving at {r['arrival_rate']:6.1f}/s ({r['fraction']:.0%} of the closed loop's rate):"
                f" p50 {fmt(lat['p50'])} p99 {fmt(lat['p99'])} ms"
            )
    print(f"ours / certificate-issue limit ({procs} procs) {ratios['ours_over_certificate_limit']:.3f}")
    print(f"ours / SPNEGO accept limit (1 thread)    {ratios['ours_over_spnego_accept_limit']:.3f}")
    closing_note(result, main_new)


def closing_note(result: dict, main_new: dict) -> None:
    per = main_new.get("cpu_ms_per_logon", {})
    server_ms = per.get("server")
    cores = result["limits"]["on_cpus"]
    print("\n==== closing note ====")
    if server_ms:
        print(
            f"The server needs {server_ms:.2f} ms of CPU per logon (new call): on {cores} CPU(s) it cannot pass "
            f"{cores * 1000 / server_ms:.0f} logons/s even with nothing else running."
        )
    gen = [r for r in result["runs"] if r.get("generator_may_limit") and r.get("pass") in ("main", "renewal")]
    if gen:
        print("The Python load generator may have been the limit in: " + "; ".join(r["label"] for r in gen))
    else:
        print("The Python load generator was not the limit in any pass (its CPU per logon well under the server's).")
    profiles = {db: d.get("profile") for db, d in result["databases"].items()}
    if profiles.get("postgresql"):
        print_profile(profiles["postgresql"], "PostgreSQL, first server process", brief=True)
    if profiles.get("sqlite"):
        print_profile(profiles["sqlite"], "SQLite")


# ---- chart ------------------------------------------------------------------------------------------------


def chart(result: dict, path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("chart: matplotlib is not installed (.venv/bin/pip install matplotlib); no PNG")
        return False
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.8))
    for db, style in (("sqlite", "o-"), ("postgresql", "s-")):
        if db not in result["db_labels"]:
            continue
        new = sorted(
            (r["concurrency"], r)
            for r in result["runs"]
            if r.get("db") == db and r["protocol"] == "new" and r["pass"] in ("sweep", "renewal") and r["logons"]
        )
        if new:
            xs = [c for c, _ in new]
            ax1.plot(xs, [r["logons_per_s"] for _, r in new], style, label=f"{result['db_labels'][db]}, new, renewals")
            for q, dash in (("p50", "-"), ("p99", "--")):
                ax2.plot(xs, [r["latency_ms"]["logon"][q] for _, r in new], style[0] + dash, label=f"{db} new {q}")
        for r in result["runs"]:
            if r.get("db") == db and r["pass"] == "main" and r["logons"]:
                mark = "x" if r["protocol"] == "old" else "+"
                ax1.plot([r["concurrency"]], [r["logons_per_s"]], mark, ms=10, label=f"{db} {r['protocol']}, first")
                ax2.plot(
                    [r["concurrency"]],
                    [r["latency_ms"]["logon"]["p99"]],
                    mark,
                    ms=10,
                    label=f"{db} {r['protocol']} p99",
                )
    if result.get("cfssl"):
        ax1.axhline(result["cfssl"]["signs_per_s"], color="tab:red", ls=":", label="cfssl serve, signs/s")
    if result.get("limits"):
        sign = result["limits"]["signing"]
        best = sign[max(sign)]["certificates_per_s"]
        ax1.axhline(best, color="tab:green", ls=":", label=f"CA certificate issue limit ({max(sign)} procs)")
    ax1.axhline(TARGET_RATE, color="grey", ls="--", label=f"target {TARGET_RATE:.0f}/s")
    ax2.axhline(TARGET_P99_MS, color="grey", ls="--", label=f"target p99 {TARGET_P99_MS:.0f} ms")
    ax1.set(xlabel="concurrent clients", ylabel="complete logons/s", title="throughput", xscale="log", yscale="log")
    ax2.set(xlabel="concurrent clients", ylabel="ms per complete logon", title="latency")
    ax2.set(xscale="log", yscale="log")
    for ax in (ax1, ax2):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=6)
    pinned = result.get("pinning")
    where = f", server on CPUs {pinned['server']}" if pinned else ""
    fig.suptitle(f"autoenroll logon storm, {result['machine']['cpus']} CPUs{where}, {result['args']['users']} users")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


if __name__ == "__main__":
    sys.exit(main())
