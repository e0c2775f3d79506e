#!/usr/bin/env python3
"""Driver for benches/load.sh: starts the upstream, the peers and sessiongate on loopback,
runs wrk against each in interleaved rounds, prints a table and ratios. Everything it starts
is stopped at exit; every run is bounded by DURATION."""
import json, os, re, secrets, shutil, signal, socket, ssl, statistics, subprocess, sys, tempfile, time
import urllib.request

ROUNDS = int(os.environ.get("ROUNDS", "3"))
DURATION = int(os.environ.get("DURATION", "10"))
CONNS = int(os.environ.get("CONNS", "64"))
THREADS = int(os.environ.get("THREADS", "1"))
SCENARIOS = os.environ.get("SCENARIOS", "cookie,refresh,memory,login").split(",")
# ACCESS_LOG=1: sessiongate writes its access log (to a file), as it does by default.
ACCESS_LOG = os.environ.get("ACCESS_LOG", "") == "1"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "sessiongate")
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
UA = "sessiongate-load/1"

procs = []
work = tempfile.mkdtemp(prefix="sg-load-")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_port(port, timeout=15):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port}")


def start(cmd, **kw):
    p = subprocess.Popen(cmd, stdout=kw.pop("stdout", subprocess.DEVNULL), stderr=kw.pop("stderr", subprocess.DEVNULL), **kw)
    procs.append(p)
    return p


def cleanup():
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()
    shutil.rmtree(work, ignore_errors=True)


def write(name, text):
    path = os.path.join(work, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def wrk(url, headers, script=None):
    cmd = ["wrk", f"-t{THREADS}", f"-c{CONNS}", f"-d{DURATION}s", "--latency", "--timeout", "5s"]
    for h in headers:
        cmd += ["-H", h]
    if script:
        cmd += ["-s", script]
    cmd.append(url)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=DURATION + 30).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    def lat(pct):
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        v, unit = float(m.group(1)), m.group(2)
        return v / 1000 if unit == "us" else v * 1000 if unit == "s" else v
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = (int(non2xx.group(1)) if non2xx else 0) + (sum(int(x) for x in sock.groups()) if sock else 0)
    return {"rps": rps, "p50": lat(50), "p99": lat(99), "errors": errors}


def main():
    # --- certificate, secrets
    cert, key = os.path.join(work, "cert.pem"), os.path.join(work, "key.pem")
    subprocess.run([BIN, "dev-cert", "--cert", cert, "--key", key], check=True, capture_output=True)
    access, refresh = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    password = secrets.token_urlsafe(12)
    phc = subprocess.run([BIN, "hash-password"], input=password, capture_output=True, text=True, check=True).stdout.strip()
    users = write("users.toml", f'[[user]]\nname = "bench"\npassword_hash = "{phc}"\nroles = ["bench"]\n')

    # --- upstream: nginx, one worker, a small 200
    up = free_port()
    up_conf = write("upstream.conf", f"""
worker_processes 1; daemon off; pid {work}/up.pid; error_log {work}/up.err warn;
events {{ worker_connections 4096; }}
http {{ access_log off; keepalive_requests 1000000;
  server {{ listen 127.0.0.1:{up}; location / {{ return 200 "ok\\n"; }} }} }}""")
    start([NGINX, "-c", up_conf, "-p", work])
    # --- nginx as plain TLS proxy: 2 workers, upstream keep-alive
    ng = free_port()
    ng_conf = write("nginx.conf", f"""
worker_processes 2; daemon off; pid {work}/ng.pid; error_log {work}/ng.err warn;
events {{ worker_connections 4096; }}
http {{ access_log off; keepalive_requests 1000000;
  upstream app {{ server 127.0.0.1:{up}; keepalive 128; }}
  server {{ listen 127.0.0.1:{ng} ssl; ssl_certificate {cert}; ssl_certificate_key {key};
    location / {{ proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; }} }} }}""")
    start([NGINX, "-c", ng_conf, "-p", work])
    # --- HAProxy 2.6: TLS, jwt_verify on the session cookie, 2 threads
    ha = free_port()
    pem = write("haproxy.pem", open(cert).read() + open(key).read())
    ha_conf = write("haproxy.cfg", f"""
global
  nbthread 2
  maxconn 4000
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  option http-keep-alive
frontend fe
  bind 127.0.0.1:{ha} ssl crt {pem} alpn http/1.1
  http-request set-var(txn.jwt) req.cook(__Host-sg-access)
  http-request deny deny_status 401 unless {{ var(txn.jwt),jwt_header_query('$.alg') -m str HS256 }}
  http-request deny deny_status 401 unless {{ var(txn.jwt),jwt_verify("HS256","{access}") -m int 1 }}
  http-request set-var(txn.now) date()
  http-request set-var(txn.exp) var(txn.jwt),jwt_payload_query('$.exp','int')
  http-request deny deny_status 401 if {{ var(txn.exp),sub(txn.now) -m int lt 0 }}
  default_backend be
backend be
  http-reuse always
  server app 127.0.0.1:{up} maxconn 1000
""")
    start([HAPROXY, "-f", ha_conf, "-db"], stderr=open(os.path.join(work, "ha.err"), "w"))
    # --- sessiongate
    sg, sg_http, sg_admin = free_port(), free_port(), free_port()
    audit = os.path.join(work, "audit.log")
    def sg_conf(port=sg, admin=sg_admin, store='kind = "memory"', name="gateway.toml", extra=""):
        return write(name, f"""
[server]
listen = "127.0.0.1:{port}"
redirect_listen = ""
admin_listen = "127.0.0.1:{admin}"
public_origin = "https://localhost:{port}"
header_read_timeout = "60s"
# Every client here is 127.0.0.1 (wrk, and the memory scenario's 10,000 idle connections).
max_connections_per_ip = 100000
[tls]
cert = "{cert}"
key = "{key}"
[[upstream]]
name = "app"
url = "http://127.0.0.1:{up}"
[session]
access_ttl = "15m"
refresh_grace = "2m"
[store]
{store}
[keys]
access_secret_env = "SG_ACCESS"
refresh_secret_env = "SG_REFRESH"
[login]
users_file = "{users}"
max_failures_per_ip = 1000000
[audit]
file = "{audit}"
[log]
level = "warn"
# Like the peers here (nginx: access_log off; HAProxy logs nothing without a log target).
[access_log]
enabled = {"true" if ACCESS_LOG else "false"}
{extra}
""")
    env = dict(os.environ, SG_ACCESS=access, SG_REFRESH=refresh)
    env.pop("RUST_LOG", None)
    gw = start([BIN, "run", "--config", sg_conf()], env=env, stderr=open(os.path.join(work, "sg.err"), "w"))
    for name, p in (("upstream", up), ("nginx", ng), ("haproxy", ha), ("sessiongate", sg)):
        try:
            wait_port(p)
        except SystemExit:
            for f in ("up.err", "ng.err", "ha.err", "sg.err"):
                path = os.path.join(work, f)
                if os.path.exists(path):
                    print(open(path).read())
            raise SystemExit(f"{name} did not start (port {p})")

    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE

    def login(port=sg):
        req = urllib.request.Request(f"https://127.0.0.1:{port}/.auth/login", data=json.dumps({"username": "bench", "password": password}).encode(),
                                     headers={"Content-Type": "application/json", "User-Agent": UA, "Host": f"localhost:{port}"})
        with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
            return json.loads(r.read())

    print(f"# method: wrk -t{THREADS} -c{CONNS} -d{DURATION}s, {ROUNDS} interleaved rounds, loopback, {os.cpu_count()} cores; "
          f"upstream nginx (1 worker), nginx TLS proxy (2 workers), HAProxy 2.6 jwt_verify (2 threads), sessiongate (release); "
          f"access logs {'on for sessiongate (ACCESS_LOG=1)' if ACCESS_LOG else 'off everywhere (ACCESS_LOG=1 turns sessiongate’s on)'}")
    results = {}
    if "cookie" in SCENARIOS:
        # Beside sessiongate, the same configuration with a per-session rate limit too high to
        # trigger (every request still takes a token): on the memory store (the row above's
        # store), and on Redis when redis-server is installed (tokens leased from the shared
        # bucket, a script call per lease).
        targets = [("nginx", ng), ("haproxy", ha), ("sessiongate", sg)]
        rate_limit = '[rate_limit]\nper_session = "100000000/1s"'
        sg_rl, sg_rl_admin = free_port(), free_port()
        start([BIN, "run", "--config", sg_conf(sg_rl, sg_rl_admin, name="gateway-rl.toml", extra=rate_limit)],
              env=env, stderr=open(os.path.join(work, "sg-rl.err"), "w"))
        wait_port(sg_rl)
        targets.append(("sg+rl", sg_rl))
        redis_bin = shutil.which("redis-server")
        if redis_bin:
            rp, sg_rr, sg_rr_admin = free_port(), free_port(), free_port()
            start([redis_bin, "--port", str(rp), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", work])
            wait_port(rp)
            conf = sg_conf(sg_rr, sg_rr_admin, f'kind = "redis"\nurl = "redis://127.0.0.1:{rp}/0"', "gateway-rl-redis.toml", rate_limit)
            start([BIN, "run", "--config", conf], env=env, stderr=open(os.path.join(work, "sg-rl-redis.err"), "w"))
            wait_port(sg_rr)
            targets.append(("sg+rl redis", sg_rr))
        names = [n for n, _ in targets]
        print("# sg+rl: sessiongate (memory store) with [rate_limit] per_session = \"100000000/1s\"; "
              "sg+rl redis: the same on the Redis store (leases of the shared bucket)")
        rounds = []
        for r in range(ROUNDS):
            row = {}
            for name, port in targets:
                # Each gateway signs its own tokens (its own public origin).
                tok = login(port if name.startswith("sg") else sg)["access_token"]
                hdr = [f"Cookie: __Host-sg-access={tok}", f"User-Agent: {UA}", f"Host: localhost:{port if name.startswith('sg') else sg}"]
                row[name] = wrk(f"https://127.0.0.1:{port}/app/item", hdr)
            rounds.append(row)
            print(f"round {r + 1}: " + "  ".join(f"{k} {v['rps']:.0f} rps p50 {v['p50']:.2f}ms p99 {v['p99']:.2f}ms err {v['errors']}" for k, v in row.items()), flush=True)
        results["cookie"] = rounds
        print("\n## valid cookie (hot path)")
        print(f"{'target':<12} {'req/s (median)':>15} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
        for name in names:
            med = lambda k: statistics.median(x[name][k] for x in rounds)
            print(f"{name:<12} {med('rps'):>15.0f} {med('p50'):>8.2f} {med('p99'):>8.2f} {sum(x[name]['errors'] for x in rounds):>7}")
        tp_ng = [x["sessiongate"]["rps"] / x["nginx"]["rps"] for x in rounds]
        tp_ha = [x["sessiongate"]["rps"] / x["haproxy"]["rps"] for x in rounds]
        p99 = [x["sessiongate"]["p99"] / x["nginx"]["p99"] for x in rounds]
        print(f"sessiongate/nginx throughput per round: {', '.join(f'{v:.2f}' for v in tp_ng)}  median {statistics.median(tp_ng):.2f}  (target >= 0.90)")
        print(f"sessiongate/HAProxy throughput per round: {', '.join(f'{v:.2f}' for v in tp_ha)}  median {statistics.median(tp_ha):.2f}  (target >= 1.10)")
        print(f"sessiongate/nginx p99 per round: {', '.join(f'{v:.2f}' for v in p99)}  median {statistics.median(p99):.2f}  (target <= 1.20)")
        for name in names[3:]:
            rl = [x[name]["rps"] / x["sessiongate"]["rps"] for x in rounds]
            print(f"{name}/sessiongate throughput per round: {', '.join(f'{v:.2f}' for v in rl)}  median {statistics.median(rl):.2f}")
    if "refresh" in SCENARIOS:
        print("\n## refresh path (no access cookie, a valid refresh cookie on every request; memory store)")
        print("   the first request rotates; the rest present the previous token inside refresh_grace (2m): each does a store")
        print("   operation (concurrent presentations of one token share it: single-flight), mints both tokens and sets both")
        print("   cookies. For independent refresh chains against Redis see `cargo bench --bench redis_load`.")
        vals = []
        for r in range(ROUNDS):
            rt = login()["refresh_token"]
            res = wrk(f"https://127.0.0.1:{sg}/app/item", [f"Cookie: __Host-sg-refresh={rt}", f"User-Agent: {UA}", f"Host: localhost:{sg}"])
            vals.append(res)
            print(f"round {r + 1}: {res['rps']:.0f} rps p50 {res['p50']:.2f}ms p99 {res['p99']:.2f}ms errors {res['errors']}", flush=True)
        print(f"refresh median (memory store): {statistics.median(v['rps'] for v in vals):.0f} req/s")
        redis_bin = shutil.which("redis-server")
        if not redis_bin:
            print("refresh on Redis: skipped, redis-server is not installed (apt-get install redis-server)")
        else:
            rp, sg2, sg2_admin = free_port(), free_port(), free_port()
            start([redis_bin, "--port", str(rp), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", work])
            wait_port(rp)
            conf2 = sg_conf(sg2, sg2_admin, f'kind = "redis"\nurl = "redis://127.0.0.1:{rp}/0"', "gateway-redis.toml")
            start([BIN, "run", "--config", conf2], env=env, stderr=open(os.path.join(work, "sg2.err"), "w"))
            wait_port(sg2)
            print("## refresh path on the Redis store (same method; the store operation is a Lua script)")
            vals = []
            for r in range(ROUNDS):
                rt = login(sg2)["refresh_token"]
                res = wrk(f"https://127.0.0.1:{sg2}/app/item", [f"Cookie: __Host-sg-refresh={rt}", f"User-Agent: {UA}", f"Host: localhost:{sg2}"])
                vals.append(res)
                print(f"round {r + 1}: {res['rps']:.0f} rps p50 {res['p50']:.2f}ms p99 {res['p99']:.2f}ms errors {res['errors']}", flush=True)
            print(f"refresh median (redis store): {statistics.median(v['rps'] for v in vals):.0f} req/s")
    if "profile" in SCENARIOS:
        # CPU profile of the hot path (valid cookie) with perf's software clock.
        print("\n## profile: perf record -e cpu-clock -g on sessiongate under the valid-cookie load")
        tok = login()["access_token"]
        data = os.path.join(work, "perf.data")
        perf = subprocess.Popen(["perf", "record", "-e", "cpu-clock", "-F", "1999", "-g", "-o", data, "-p", str(gw.pid), "--", "sleep", str(DURATION)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wrk(f"https://127.0.0.1:{sg}/app/item", [f"Cookie: __Host-sg-access={tok}", f"User-Agent: {UA}", f"Host: localhost:{sg}"])
        perf.wait(30)
        rep = subprocess.run(["perf", "report", "-i", data, "--stdio", "--no-children", "--sort", "dso,symbol", "-g", "none", "--percent-limit", "0.7"],
                             capture_output=True, text=True).stdout
        print("\n".join([" ".join(l.split()[:5])[:150] for l in rep.splitlines() if l.strip() and not l.startswith("#")][:45]))
        kern = subprocess.run(["perf", "report", "-i", data, "--stdio", "--no-children", "--sort", "dso", "-g", "none"], capture_output=True, text=True).stdout
        print("\nby object:\n" + "\n".join([" ".join(l.split()) for l in kern.splitlines() if l.strip() and not l.startswith("#")][:8]))
    if "memory" in SCENARIOS:
        print("\n## memory: 10,000 idle TLS keep-alive connections")
        base = rss_kb(gw.pid)
        socks = []
        tok = login()["access_token"]
        n = int(os.environ.get("IDLE_CONNS", "10000"))
        req = (f"GET /app/item HTTP/1.1\r\nHost: localhost:{sg}\r\nUser-Agent: {UA}\r\nCookie: __Host-sg-access={tok}\r\n\r\n").encode()
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, n + 1000), hard))
        t0 = time.time()
        for i in range(n):
            s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", sg)), server_hostname="localhost")
            if not os.environ.get("IDLE_NO_REQUEST"):
                s.sendall(req)
                s.recv(4096)
            socks.append(s)
        held = rss_kb(gw.pid)
        print(f"opened {n} connections in {time.time() - t0:.1f}s; gateway RSS {base / 1024:.1f} MB before, {held / 1024:.1f} MB holding them "
              f"({(held - base) * 1024 / n:.0f} bytes per connection)  (target: <= 200 MB holding them)")
        for s in socks:
            s.close()
    if "login" in SCENARIOS:
        print("\n## login (JSON, argon2id m=19MiB t=2 p=1 per request; memory store)")
        lua = write("login.lua", 'wrk.method = "POST"\nwrk.body = ' + json.dumps(json.dumps({"username": "bench", "password": password})) +
                    '\nwrk.headers["Content-Type"] = "application/json"\n')
        vals = []
        for r in range(ROUNDS):
            res = wrk(f"https://127.0.0.1:{sg}/.auth/login", [f"User-Agent: {UA}", f"Host: localhost:{sg}"], script=lua)
            vals.append(res)
            print(f"round {r + 1}: {res['rps']:.0f} logins/s p50 {res['p50']:.2f}ms p99 {res['p99']:.2f}ms errors {res['errors']}", flush=True)
        print(f"login median: {statistics.median(v['rps'] for v in vals):.0f} logins/s")



if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    try:
        main()
    finally:
        cleanup()
