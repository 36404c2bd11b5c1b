"""Benchmark: a logon storm end to end, with the limits and a peer measured in the same run.

    sudo .venv/bin/python bench/storm.py [--users 1000] [--concurrency 50] [--workers 2]

1. Starts a test-bed Samba AD DC on 127.0.0.8 and the real server (gunicorn, N workers, HTTPS, built-in CA);
   creates U users in AD, gets a TGT and a service ticket for each and makes their CSRs (not timed).
2. Runs sync -> enroll -> status for every user with C concurrent clients (the main run), then a short
   sweep over other concurrencies; prints enrollments/s, p50/p95/p99 per step, errors by number, the RSS
   of each worker and the CPU of the server, Samba and the load generator.
3. Measures on the same machine, in the same run: the raw signing rate of the CA key, the in-process
   SPNEGO accept rate, and cfssl `serve` signing the same CSRs over HTTP; prints ours / limit and ours / cfssl.
   py-spy samples the server's workers during an extra burst: the closing note names the bottleneck.
4. Repeats the main run and the sweep on PostgreSQL (a throw-away cluster from Debian's package) with
   2 server processes (two `serve` instances, 1 worker each, the clients spread over both).
5. Writes bench/results/storm-<time>.json and .png (throughput and latency against concurrency).

Every loop is bounded in count and time; everything listens on loopback; every process it starts is
stopped by its PID (PostgreSQL with pg_ctl, the DC with dc.stop(), the server with server.stop()).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
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
TARGET_RATE = 500.0
TARGET_P99_MS = 50.0
TARGET_CFSSL = 1.0
MB = 1024 * 1024

# What would remove each part of the server's CPU, for the closing note (measured in bench/README.md).
FIXES = {
    "database (Django ORM + driver)": "35 SQL statements per logon (sync 11, enroll 17, status 7), a third of them "
    "re-reading configuration: the realm list per request (kerberos/spnego.py authenticate), the customer per step "
    "(enrollment/pipeline.py _customer), AD server, organization and mail domain per sync/enroll, the issuing CA "
    "and its chain per enroll (certificates/authority.py issuing_ca, chain_pem). A per-process cache of those rows "
    "(cleared by post_save/post_delete signals) took the in-process CPU per logon from 19.1 to 13.3 ms (-30 %). "
    "And report_status opens an empty transaction.atomic() when nothing is revoked (BEGIN IMMEDIATE + COMMIT: "
    "SQLite's write lock for nothing): open it only when there is a revocation",
    "TLS handshake / socket I/O": "gunicorn builds a new SSLContext for every connection (gunicorn/sock.py "
    "ssl_wrap_socket -> ssl_context: create_default_context + load_cert_chain, 0.9 ms CPU) and so can never resume "
    "a TLS session: give the `ssl_context` server hook in management/commands/serve.py _options a context built "
    "once per worker. And the agent (agent/client.py EnrollmentClient.call) opens one connection per call: with "
    "one per logon the server needed 29.8 instead of 36.9 ms CPU per enrollment (--per-call, 300 users)",
    "SPNEGO (token parse, gssapi accept)": "the gssapi accept is cheap (thousands/s in-process); the ticket's "
    "service name is read with a full pyasn1 decode of the AP-REQ (kerberos/spnego.py _ticket_service, "
    "uncommitted change): 712 us per token against 21 us for the hand-written DER walk it replaced; "
    "decode only up to sname (or keep the DER walk). The keytab stat per request could be checked once a second",
    "LDAP search in AD (ldap3 over TLS)": "ldap3's pure-Python BER codec, and one connection per worker "
    "behind a lock (directory/ldap.py DirectoryClient): one connection per worker thread",
    "CA: build, sign, verify certificate": "small: the x509 builder and the self-check verify",
    "request logging": "two lines per request (access log + enrollment log)",
    "request handling (ninja, pydantic, pipeline code)": "pydantic validation, JSON rendering and the pipeline's "
    "own Python per call",
    "Django request cycle (middleware, URLs)": "the session, CSRF, auth, messages and axes middleware run for "
    "/api/enroll/* (measured in-process: trimming them saves ~0.2 ms per logon, little)",
    "gunicorn worker loop": "gthread's accept/keep-alive loop",
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--users", type=int, default=1000, help="AD users, one logon each in the main run (max 20,000)")
    p.add_argument("--concurrency", type=int, default=50, help="concurrent clients of the main run (max 500)")
    p.add_argument("--workers", type=int, default=2, help="gunicorn workers of the SQLite server")
    p.add_argument("--sweep", default="1,10,25,100", help="other concurrencies for the chart (comma-separated)")
    p.add_argument("--sweep-seconds", type=float, default=4.0, help="time limit of each sweep point")
    p.add_argument("--time-limit", type=float, default=75.0, help="time limit of each main run, seconds")
    p.add_argument("--profile-seconds", type=float, default=5.0, help="py-spy burst (0: no profile)")
    p.add_argument("--pg-servers", type=int, default=2, help="server processes on PostgreSQL (0: skip PostgreSQL)")
    p.add_argument("--pg-workers", type=int, default=1, help="gunicorn workers per PostgreSQL server process")
    p.add_argument("--no-cfssl", action="store_true", help="skip the cfssl peer")
    p.add_argument("--per-call", action="store_true", help="one TLS connection per call, as the agent does")
    p.add_argument("--ip", default="127.0.0.8", help="loopback address of the test DC")
    p.add_argument("--out", type=Path, default=RESULTS, help="where the JSON and PNG go")
    args = p.parse_args(argv)
    if not 1 <= args.users <= 20_000 or not 1 <= args.concurrency <= 500:
        p.error("--users must be 1..20000 and --concurrency 1..500")
    args.sweep = sorted({int(c) for c in args.sweep.split(",") if c.strip()} - {args.concurrency})
    if any(not 1 <= c <= 500 for c in args.sweep):
        p.error("sweep concurrencies must be 1..500")
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
        "concurrency": result.concurrency,
        "enrollments": result.done,
        "errors": dict(result.errors),
        "error_count": sum(result.errors.values()),
        "seconds": round(result.elapsed, 3),
        "enrollments_per_s": round(result.rate, 2),
        "stopped_by_time_limit": result.stopped_by_time,
        "latency_ms": {
            step: {f"p{q}": pct(v, q) for q in (50, 95, 99)} | {"max": max(v) * 1000 if v else None}
            for step, v in result.timings.items()
        },
    }
    if meter is not None:
        out["cpu_seconds"] = {k: round(v, 2) for k, v in meter.result.items()}
        out["cpu_cores"] = {k: round(v, 3) for k, v in meter.shares().items()}
        if result.done:
            out["cpu_ms_per_enrollment"] = {k: round(v * 1000 / result.done, 2) for k, v in meter.result.items()}
    if rss is not None:
        out["worker_rss_mb"] = [round(r / MB, 1) for r in rss]
    return out


def fmt(value: float | None, spec: str = "7.1f") -> str:
    return format(value, spec) if value is not None else "      -"


def print_run(s: dict) -> None:
    print(
        f"\n[{s['label']}] {s['enrollments']} enrollments, {s['error_count']} errors, {s['seconds']:.1f} s, "
        f"concurrency {s['concurrency']}: {s['enrollments_per_s']:.1f} enrollments/s"
        + ("  (stopped by the time limit)" if s["stopped_by_time_limit"] else "")
    )
    for step, q in s["latency_ms"].items():
        print(f"    {step:7s} p50 {fmt(q['p50'])} ms   p95 {fmt(q['p95'])} ms   p99 {fmt(q['p99'])} ms")
    for key, n in sorted(s["errors"].items(), key=lambda kv: -kv[1]):
        print(f"    error x{n}: {key}")
    if "cpu_cores" in s:
        cores = s["cpu_cores"]
        parts = [f"{k} {cores[k]:.2f}" for k in cores if k != "machine"]
        print(f"    CPU in cores (of {os.cpu_count()}): " + ", ".join(parts) + f"; machine {cores['machine']:.2f}")
        if "cpu_ms_per_enrollment" in s:
            per = s["cpu_ms_per_enrollment"]
            print("    CPU ms per enrollment: " + ", ".join(f"{k} {v:.1f}" for k, v in per.items()))
    if "worker_rss_mb" in s:
        print("    worker RSS (MB): " + ", ".join(f"{r:.0f}" for r in s["worker_rss_mb"]))


# ---- phases -----------------------------------------------------------------------------------------------


def measured(label, clients, users, concurrency, count, time_limit, groups, masters) -> dict:
    meter = psys.CPUMeter(groups).start()
    result = load.run_load(clients, users, concurrency, count, time_limit)
    meter.stop()
    rss = [r for m in masters for r in psys.worker_rss(m)]
    summary = run_summary(label, result, meter, rss)
    print_run(summary)
    return summary


def sweep(label, clients, users, concurrencies, seconds, groups) -> list[dict]:
    out = []
    for c in concurrencies:
        meter = psys.CPUMeter(groups).start()
        result = load.run_load(clients, users, c, len(users), seconds)
        meter.stop()
        s = run_summary(f"{label} sweep", result, meter)
        lat = s["latency_ms"]["logon"]
        print(
            f"  {label} sweep c={c:<4d} {s['enrollments_per_s']:7.1f}/s  logon p50 {fmt(lat['p50'])} "
            f"p99 {fmt(lat['p99'])} ms  errors {s['error_count']}  machine {s['cpu_cores'].get('machine', 0):.2f} cores"
        )
        out.append(s)
    return out


def warm_up(clients, users, workers_total: int) -> None:
    """Every worker thread opens its LDAP connection, loads the keytab and decrypts the CA key (not timed)."""
    n = min(len(users), max(8, 4 * workers_total))
    result = load.run_load(clients, users[:n], min(8, n), n, 60)
    if result.errors:
        raise RuntimeError(f"warm-up failed: {dict(result.errors)}")


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


def run_profile(master: int, clients, users, concurrency: int, seconds: float, out: Path) -> dict | None:
    if seconds <= 0 or profile.py_spy() is None:
        print("\nprofile: skipped" + ("" if seconds <= 0 else " (py-spy is not installed)"))
        return None
    gil_out = out.with_name(out.name.replace(".pyspy.txt", ".gil.pyspy.txt"))
    spies = [profile.start(master, seconds + 1, out), profile.start(master, seconds + 1, gil_out, gil=True)]
    time.sleep(0.5)
    result = load.run_load(clients, users, concurrency, len(users), seconds)
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
    report["enrollments_during_profile"] = result.done
    report["raw_files"] = [out.name, gil_out.name]
    return report


def print_profile(report: dict, label: str, brief: bool = False) -> None:
    gil = report["gil"]
    print(
        f"\nprofile of the server's workers, {label} (py-spy: {report['samples']} samples of busy threads = wall, "
        f"incl. C code and waits; {gil['samples']} samples holding the GIL = Python CPU):"
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
        points = sorted((r["concurrency"], r) for r in result["runs"] if r.get("db") == db and r["enrollments"] > 0)
        if not points:
            continue
        xs = [c for c, _ in points]
        ax1.plot(xs, [r["enrollments_per_s"] for _, r in points], style, label=result["db_labels"][db])
        for q, dash in (("p50", "-"), ("p99", "--")):
            ax2.plot(xs, [r["latency_ms"]["logon"][q] for _, r in points], style[0] + dash, label=f"{db} logon {q}")
    if result.get("cfssl"):
        ax1.axhline(result["cfssl"]["signs_per_s"], color="tab:red", ls=":", label="cfssl serve, signs/s")
    if result.get("limits"):
        sign = result["limits"]["signing"]
        best = sign[max(sign)]["certificates_per_s"]
        ax1.axhline(best, color="tab:green", ls=":", label=f"CA certificate issue limit ({max(sign)} procs)")
    ax1.axhline(TARGET_RATE, color="grey", ls="--", label=f"target {TARGET_RATE:.0f}/s")
    ax2.axhline(TARGET_P99_MS, color="grey", ls="--", label=f"target p99 {TARGET_P99_MS:.0f} ms")
    ax1.set(xlabel="concurrent clients", ylabel="enrollments/s", title="throughput", xscale="log", yscale="log")
    ax2.set(xlabel="concurrent clients", ylabel="ms per logon (sync+enroll+status)", title="latency")
    ax2.set(xscale="log", yscale="log")
    for ax in (ax1, ax2):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"autoenroll logon storm, {result['machine']['cpus']} CPUs, {result['args']['users']} users")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


# ---- main -------------------------------------------------------------------------------------------------


def main(argv=None) -> int:
    args = parse_args(argv)
    t_start = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    result: dict = {
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "kernel": platform.release(),
            "load_average_at_start": os.getloadavg(),
        },
        "runs": [],
        "db_labels": {},
    }
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
            names = [f"storm{i:05d}" for i in range(args.users)]
            t0 = time.perf_counter()
            # the server initialises and starts while Samba makes the users (both only need the DC)
            server_future = background.submit(
                start_server, work / "server", dc, customer=CUSTOMER, workers=args.workers
            )
            load.create_users(dc, names, connections=4, time_limit=180)
            setup["users_per_s"] = round(args.users / (time.perf_counter() - t0), 1)
            users = [load.BenchUser(sam, f"{sam}@{samba.DOMAIN}") for sam in names]
            t0 = time.perf_counter()
            load.get_tickets(users, samba.REALM, threads=4, time_limit=120)
            setup["tgt_per_s"] = round(args.users / (time.perf_counter() - t0), 1)
            setup["service_tickets_per_s"] = round(prefetch_service_tickets(users, threads=4), 1)
            t0 = time.perf_counter()
            for user in users:
                user.csr = load.make_csr(user.sam)
            setup["csrs_per_s"] = round(args.users / (time.perf_counter() - t0), 1)
            server = server_future.result(timeout=300)
            setup["seconds"] = round(time.perf_counter() - t_start, 1)
            result["setup"] = setup
            print(
                f"setup ({setup['seconds']} s, not timed): DC on {dc.ip}; {args.users} users at "
                f"{setup['users_per_s']}/s, "
                f"TGTs at {setup['tgt_per_s']}/s, service tickets at {setup['service_tickets_per_s']}/s, "
                f"CSRs at {setup['csrs_per_s']}/s; server {server.url} with {args.workers} workers; "
                f"{'one TLS connection per call' if args.per_call else 'one TLS connection per logon'}"
            )

            # ---- SQLite: main run, sweep, profile -------------------------------------------------
            label = f"SQLite, 1 server process x {args.workers} workers"
            result["db_labels"]["sqlite"] = label
            ctx = server_context(server.root_ca)
            clients = [load.Client(server.port, ctx, SERVICE, CUSTOMER, args.per_call)]
            groups = {"server": [server.process.pid], "samba": [dc.pid]}
            warm_up(clients, users, args.workers)
            main_run = measured(
                label, clients, users, args.concurrency, args.users, args.time_limit, groups, [server.process.pid]
            )
            main_run["db"] = "sqlite"
            main_run["main"] = True
            result["runs"].append(main_run)
            for s in sweep("sqlite", clients, users, args.sweep, args.sweep_seconds, groups):
                result["runs"].append(s | {"db": "sqlite"})
            report = run_profile(
                server.process.pid,
                clients,
                users,
                args.concurrency,
                args.profile_seconds,
                args.out / f"storm-{stamp}.pyspy.txt",
            )
            result["profiles"] = {"sqlite": report}

            # ---- limits and the peer, on the same machine --------------------------------------------
            passphrase = (server.workdir / "ca-passphrase").read_bytes().strip()
            sign = limits.signing_rates(
                server.data_dir / "ca", passphrase, f"http://{SERVER_HOST}", os.cpu_count() or 1
            )
            accept = limits.spnego_accept_rate([u.creds for u in users[:50]], SERVICE, dc.keytab)
            result["limits"] = {"signing": sign, "spnego": accept}
            if not args.no_cfssl:
                cfssl = psys.Cfssl(
                    server.issuing_ca, server.data_dir / "ca" / "issuing-ca.key", server.workdir / "ca-passphrase"
                )
                cfssl.start()
                load.run_cfssl(cfssl.port, [u.csr for u in users[:100]], 8, 30)  # warm-up
                meter = psys.CPUMeter({"cfssl": [cfssl.process.pid]}).start()
                peer = load.run_cfssl(cfssl.port, [u.csr for u in users], args.concurrency, args.time_limit)
                meter.stop()
                s = run_summary("cfssl serve (HTTP, same CSRs, same CA key)", peer, meter)
                result["cfssl"] = {
                    "version": cfssl.version,
                    "signs_per_s": round(peer.rate, 1),
                    "signed": peer.done,
                    "errors": dict(peer.errors),
                    "latency_ms": s["latency_ms"]["sign"],
                    "cpu_cores": s["cpu_cores"],
                    # one Python process drives cfssl: near a whole core, cfssl's figure is a lower bound
                    "generator_bound": s["cpu_cores"].get("load generator", 0) > 0.85,
                }
                cfssl.stop()
                cfssl = None
            server.stop()

            # ---- PostgreSQL: the same with 2 server processes ------------------------------------------
            if args.pg_servers > 0:
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
                clients = [load.Client(port, ctx, SERVICE, CUSTOMER, args.per_call) for port in ports]
                masters = [first.process.pid] + [e.process.pid for e in extra]
                groups = {"server": masters, "samba": [dc.pid], "postgres": [pg.pid]}
                label = f"PostgreSQL, {args.pg_servers} server processes x {args.pg_workers} workers"
                result["db_labels"]["postgresql"] = label
                warm_up(clients, users, args.pg_servers * args.pg_workers)
                run = measured(label, clients, users, args.concurrency, args.users, args.time_limit, groups, masters)
                result["runs"].append(run | {"db": "postgresql", "main": True})
                for s in sweep("postgresql", clients, users, args.sweep, args.sweep_seconds, groups):
                    result["runs"].append(s | {"db": "postgresql"})
                result["profiles"]["postgresql"] = run_profile(
                    first.process.pid, clients[:1], users, args.concurrency, args.profile_seconds,
                    args.out / f"storm-{stamp}-pg.pyspy.txt",
                )  # fmt: skip
        finally:
            if server is None and server_future is not None:
                with contextlib.suppress(Exception):
                    server = server_future.result(timeout=300)
            background.shutdown(wait=True)
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
    summarize(result, main_run)
    path = args.out / f"storm-{stamp}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    png = args.out / f"storm-{stamp}.png"
    drawn = chart(result, png)
    print(f"\nwrote {path}" + (f" and {png}" if drawn else ""))
    print(f"total wall time {result['wall_seconds']:.0f} s")
    return 0


def summarize(result: dict, main_run: dict) -> None:
    rate = main_run["enrollments_per_s"]
    p99 = main_run["latency_ms"]["logon"]["p99"] or float("inf")
    sign = result["limits"]["signing"]
    procs = max(sign)
    accept = result["limits"]["spnego"]["accepts_per_s"]
    print("\n==== limits and peer, measured in this run ====")
    for n, r in sorted(sign.items()):
        print(
            f"CA key ({n} process{'es' if n > 1 else ''}): {r['raw_signatures_per_s']:9.0f} raw signatures/s, "
            f"{r['certificates_per_s']:7.0f} S/MIME certificates/s (build + sign + verify)"
        )
    print(f"in-process SPNEGO accepts/s (1 thread): {accept:9.0f}")
    ratios = {
        "ours_over_certificate_limit": rate / sign[procs]["certificates_per_s"],
        "ours_over_raw_signing_limit": rate / sign[procs]["raw_signatures_per_s"],
        "ours_over_spnego_accept_limit": rate / accept,
    }
    cf = result.get("cfssl")
    if cf:
        ratios["ours_over_cfssl"] = rate / cf["signs_per_s"] if cf["signs_per_s"] else None
        lat, cores = cf["latency_ms"], cf["cpu_cores"]
        print(
            f"cfssl serve {cf['version']}: {cf['signs_per_s']:.0f} signs/s at concurrency "
            f"{result['args']['concurrency']} (p50 {fmt(lat['p50'], '.1f')} / p99 {fmt(lat['p99'], '.1f')} ms, "
            f"{sum(cf['errors'].values())} errors; cores: cfssl {cores.get('cfssl', 0):.2f}, "
            f"load generator {cores.get('load generator', 0):.2f}, other {cores.get('other', 0):.2f})"
        )
        if cf["generator_bound"]:
            print("  (the Python load generator was the limit there: cfssl's figure is a lower bound)")
    result["ratios"] = {k: (round(v, 4) if v is not None else None) for k, v in ratios.items()}
    print("\n==== ours (SQLite main run) against the limits and the peer ====")
    print(f"ours / certificate-issue limit ({procs} procs)   {ratios['ours_over_certificate_limit']:.3f}")
    print(f"ours / raw signing limit ({procs} procs)         {ratios['ours_over_raw_signing_limit']:.4f}")
    print(f"ours / SPNEGO accept limit (1 thread)      {ratios['ours_over_spnego_accept_limit']:.3f}")
    if cf and ratios.get("ours_over_cfssl") is not None:
        print(f"ours / cfssl                               {ratios['ours_over_cfssl']:.3f}")
    targets = {
        "enrollments_per_s": {"target": TARGET_RATE, "measured": rate, "met": rate >= TARGET_RATE},
        "p99_ms_at_concurrency": {"target": TARGET_P99_MS, "measured": p99, "met": p99 < TARGET_P99_MS},
    }
    if cf and ratios.get("ours_over_cfssl") is not None:
        r = ratios["ours_over_cfssl"]
        targets["ours_over_cfssl"] = {"target": TARGET_CFSSL, "measured": round(r, 3), "met": r >= TARGET_CFSSL}
    result["targets"] = targets
    print("\n==== targets (printed, not asserted) ====")

    def verdict(key: str) -> str:
        return "met" if targets[key]["met"] else "NOT met"

    c = main_run["concurrency"]
    print(f"enrollments/s            {rate:8.1f}    target >= {TARGET_RATE:.0f}      {verdict('enrollments_per_s')}")
    print(
        f"logon p99 at c={c:<3d}      {p99:8.1f} ms target < {TARGET_P99_MS:.0f} ms "
        f"   {verdict('p99_ms_at_concurrency')}"
    )
    if "ours_over_cfssl" in targets:
        m = targets["ours_over_cfssl"]["measured"]
        print(f"ours / cfssl             {m:8.3f}    target >= {TARGET_CFSSL:.1f}x     {verdict('ours_over_cfssl')}")
    for run in result["runs"]:
        if run.get("main") and run["db"] == "postgresql":
            p99_pg = fmt(run["latency_ms"]["logon"]["p99"], ".1f")
            print(f"(PostgreSQL main run: {run['enrollments_per_s']:.1f} enrollments/s, logon p99 {p99_pg} ms)")
    closing_note(result, main_run)


def closing_note(result: dict, main_run: dict) -> None:
    per = main_run.get("cpu_ms_per_enrollment", {})
    cores = os.cpu_count() or 1
    server_ms = per.get("server")
    print("\n==== closing note ====")
    if per:
        total = sum(v for k, v in per.items() if k not in ("machine", "other"))
        print(
            "CPU per enrollment (ms): "
            + ", ".join(f"{k} {v:.1f}" for k, v in per.items() if k not in ("machine",))
            + f"; all of it {per.get('machine', total):.1f} ms"
        )
        if server_ms:
            print(
                f"The server alone needs {server_ms:.1f} ms of CPU per enrollment: on {cores} cores it cannot pass "
                f"{cores * 1000 / server_ms:.0f} enrollments/s even with nothing else running; {TARGET_RATE:.0f}/s "
                f"needs <= {cores * 1000 / TARGET_RATE:.1f} ms for server, Samba and clients together."
            )
    report = result.get("profiles", {}).get("sqlite")
    pg_report = result.get("profiles", {}).get("postgresql")
    if pg_report:
        print_profile(pg_report, "PostgreSQL, first server process", brief=True)
    if report:
        print_profile(report, "SQLite")
        gil_parts = dict(report["gil"]["parts"])
        top = sorted((n for n in FIXES if n in gil_parts), key=lambda n: -gil_parts[n])[:3]
        print("\nBottleneck (largest parts of the server's Python CPU) and what would remove it:")
        for name in top:
            print(f"  - {name} ({gil_parts[name] * 100:.0f} % of GIL samples): {FIXES[name]}")


if __name__ == "__main__":
    sys.exit(main())
