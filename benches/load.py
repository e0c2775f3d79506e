#!/usr/bin/env python3
"""Driver for benches/load.sh: starts the upstream, the peers and sessiongate on loopback,
runs wrk against each in interleaved rounds, prints a table and ratios. Everything it starts
is stopped at exit; every run is bounded by DURATION."""
import base64, hashlib, hmac, json, os, re, secrets, shutil, signal, socket, ssl, statistics, subprocess, sys, tempfile, time
import urllib.request

import haproxy_peer  # benches/haproxy_peer.py: the HAProxy peer, configured as the other bench does

ROUNDS = int(os.environ.get("ROUNDS", "3"))
DURATION = int(os.environ.get("DURATION", "10"))
CONNS = int(os.environ.get("CONNS", "64"))
THREADS = int(os.environ.get("THREADS", "1"))
H2_STREAMS = int(os.environ.get("H2_STREAMS", "10"))
SCENARIOS = os.environ.get("SCENARIOS", "cookie,h2,idle,redis,login").split(",")
# Idle connections held per target by the idle scenario (HAProxy reserves two descriptors per
# connection and a process may have 20,000 here: 8,000 fit), and held on sessiongate beside the
# active load.
IDLE_CONNS = int(os.environ.get("IDLE_CONNS", "8000"))
BESIDE_CONNS = int(os.environ.get("BESIDE_CONNS", "10000"))
# How long the idle scenario lets a target settle before each RSS reading (longer than
# sessiongate's allocator collection period, src/allocator.rs).
SETTLE = float(os.environ.get("SETTLE", "6"))
# ACCESS_LOG=1: sessiongate writes its access log (to a file), as it does by default.
ACCESS_LOG = os.environ.get("ACCESS_LOG", "") == "1"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# SG_BIN=path: measure another build of sessiongate than this checkout's release build.
BIN = os.environ.get("SG_BIN") or os.path.join(ROOT, "target", "release", "sessiongate")
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


def tree_pids(pid):
    """A process and its children (nginx's master and workers)."""
    out = [pid]
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(d))
        except (OSError, ValueError, IndexError):
            pass
    return out


def tree_rss_kb(pid):
    """RSS of a process and its children (nginx's master and workers), in KiB."""
    total = 0
    for p in tree_pids(pid):
        try:
            total += rss_kb(p)
        except OSError:
            pass
    return total


# The system calls the syscalls scenario counts per request (with every call, and context
# switches): what a proxy does per request on its sockets, and how often it sleeps and wakes.
SYSCALLS = ["read", "recvfrom", "recvmsg", "write", "writev", "sendto", "sendmsg", "epoll_wait",
            "epoll_pwait", "epoll_ctl", "futex", "sched_yield", "setsockopt", "accept4", "close"]


def cpu_times(pid):
    """CPU time in user space and in the kernel (every thread) of a process and its children
    (nginx's master and workers), in seconds."""
    tick = os.sysconf("SC_CLK_TCK")
    user = system = 0.0
    for p in tree_pids(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            user += int(fields[11]) / tick
            system += int(fields[12]) / tick
        except (OSError, ValueError, IndexError):
            pass
    return user, system


def cpu_seconds(pid):
    """CPU time (user + system) of a process and its children, in seconds."""
    return sum(cpu_times(pid))


def with_cpu(pid, run, served):
    """`run()`'s result, with the CPU time process `pid` (and its children) spent meanwhile
    per request served, in user space (`user_us`) and the kernel (`sys_us`); `served(result)`
    says how many requests that was."""
    user0, sys0 = cpu_times(pid)
    res = run()
    user, system = cpu_times(pid)
    n = max(served(res), 1)
    res["user_us"], res["sys_us"] = (user - user0) * 1e6 / n, (system - sys0) * 1e6 / n
    return res


def h2load(url, headers):
    """h2load over TLS (ALPN h2): CONNS clients, H2_STREAMS concurrent streams each."""
    cmd = ["h2load", f"-c{CONNS}", f"-m{H2_STREAMS}", f"-t{THREADS}", "-D", str(DURATION), "--warm-up-time", "1"]
    for h in headers:
        cmd += ["-H", h]
    cmd.append(url)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=DURATION + 60).stdout
    m = re.search(r"finished in [\d.]+s, ([\d.]+) req/s", out)
    if not m:
        raise SystemExit(f"h2load printed no result:\n{out}")
    req = re.search(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout", out)
    codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    lat = re.search(r"time for request:\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)", out)
    ms = lambda v, u: float(v) / 1000 if u == "us" else float(v) * 1000 if u == "s" else float(v)
    errors = int(req.group(4)) + int(req.group(5)) + int(req.group(6)) + int(codes.group(3)) + int(codes.group(4))
    return {"rps": float(m.group(1)), "mean": ms(lat.group(5), lat.group(6)), "max": ms(lat.group(3), lat.group(4)), "errors": errors}


def hs256(secret, claims):
    b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=")
    signing = b64(b'{"alg":"HS256","typ":"JWT"}') + b"." + b64(json.dumps(claims).encode())
    return (signing + b"." + b64(hmac.new(secret, signing, hashlib.sha256).digest())).decode()


def read_response(s):
    """Read one HTTP/1.1 response with a Content-Length body off socket `s`; its status."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            raise OSError("closed before a response")
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    need = int(m.group(1)) if m else 0
    while len(body) < need:
        chunk = s.recv(65536)
        if not chunk:
            raise OSError("closed in a body")
        body += chunk
    return int(head.split(b" ", 2)[1])


def redis_used_memory(port):
    out = subprocess.run(["redis-cli", "-p", str(port), "INFO", "memory"], capture_output=True, text=True, timeout=10).stdout
    return int(re.search(r"^used_memory:(\d+)", out, re.M).group(1))


def redis_commandstats(port):
    """INFO commandstats as command -> (calls, microseconds spent in it)."""
    out = subprocess.run(["redis-cli", "-p", str(port), "INFO", "commandstats"], capture_output=True, text=True, timeout=10).stdout
    return {m.group(1): (int(m.group(2)), int(m.group(3)))
            for m in re.finditer(r"^cmdstat_([^:]+):calls=(\d+),usec=(\d+)", out, re.M)}


def redis_stats(port):
    """MEMORY STATS as name -> number. redis-cli prints the reply one element per line with
    nested replies flattened (`db.0` is followed by its own pairs), so pairs are read as a
    name followed by a number, wherever they are, rather than by position."""
    out = subprocess.run(["redis-cli", "-p", str(port), "MEMORY", "STATS"], capture_output=True, text=True, timeout=10).stdout.split("\n")
    vals = {}
    for k, v in zip(out, out[1:]):
        try:
            float(k)
            continue
        except ValueError:
            pass
        try:
            vals.setdefault(k, float(v))
        except ValueError:
            pass
    return vals


def redis_breakdown(port, per):
    """MEMORY USAGE of every key, summed by kind of key (user names, session ids and other
    variable parts replaced by a placeholder), divided by `per`; largest first."""
    keys = subprocess.run(["redis-cli", "-p", str(port), "--scan"], capture_output=True, text=True, timeout=60).stdout.split()
    usage = subprocess.run(["redis-cli", "-p", str(port)], input="".join(f"MEMORY USAGE {k} SAMPLES 0\n" for k in keys),
                           capture_output=True, text=True, timeout=120).stdout.split()
    kinds = {}
    for k, u in zip(keys, usage):
        kind = re.sub(r"\{[^}]*\}", "{user}", k)
        kind = re.sub(r"(:s:|:once:)[^:]+$", r"\1*", kind)
        kinds[kind] = kinds.get(kind, 0) + int(u)
    return sorted(((k, v / per) for k, v in kinds.items()), key=lambda kv: -kv[1])


def median_ratio(rounds, a, b, key="rps"):
    vals = [x[a][key] / x[b][key] for x in rounds]
    return vals, statistics.median(vals)


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
    done = re.search(r"(\d+) requests in", out)
    return {"rps": rps, "p50": lat(50), "p99": lat(99), "errors": errors, "requests": int(done.group(1)) if done else 0}


def raise_fd_limit():
    """Room for IDLE_CONNS held connections in this script and in every target (children
    inherit the limit): as root the hard limit is raised too, otherwise the soft one to it."""
    import resource
    want = 2 * max(IDLE_CONNS, BESIDE_CONNS) + 2000
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), max(hard, want)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main():
    raise_fd_limit()
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
  server {{ listen 127.0.0.1:{up};
    # The app's login path (upstream login): it answers with the grant the client asked for.
    location = /login {{ add_header X-Sessiongate-Grant $http_x_test_grant always; return 200 "ok\\n"; }}
    location / {{ return 200 "ok\\n"; }} }} }}""")
    start([NGINX, "-c", up_conf, "-p", work])
    # --- nginx as plain TLS proxy: 2 workers, upstream keep-alive
    # (and the same with http2 on a second port; keepalive_requests also caps HTTP/2 streams
    # per connection, hence high)
    ng, ng2 = free_port(), free_port()
    ng_conf = write("nginx.conf", f"""
worker_processes 2; daemon off; pid {work}/ng.pid; error_log {work}/ng.err warn;
events {{ worker_connections {max(IDLE_CONNS, BESIDE_CONNS) + 1000}; }}
http {{ access_log off; keepalive_requests 1000000; keepalive_timeout 300s;
  upstream app {{ server 127.0.0.1:{up}; keepalive 128; }}
  server {{ listen 127.0.0.1:{ng} ssl; ssl_certificate {cert}; ssl_certificate_key {key};
    location / {{ proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; }} }}
  server {{ listen 127.0.0.1:{ng2} ssl http2; ssl_certificate {cert}; ssl_certificate_key {key};
    location / {{ proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; }} }} }}""")
    ng_proc = start([NGINX, "-c", ng_conf, "-p", work])
    # --- HAProxy 2.6: TLS, jwt_verify on the session cookie, 2 threads
    # (and, for HTTP/2, a plain TLS proxy with alpn h2,http/1.1 and no check at all, and the
    # jwt_verify frontend again with h2)
    ha, ha2, ha2j = free_port(), free_port(), free_port()
    pem = write("haproxy.pem", open(cert).read() + open(key).read())
    ha_conf = write("haproxy.cfg", f"""
global
  nbthread 2
  maxconn {IDLE_CONNS + 500}
{haproxy_peer.DEFAULTS}frontend fe_h2
  bind 127.0.0.1:{ha2} ssl crt {pem} alpn h2,http/1.1
  default_backend be
frontend fe
  bind 127.0.0.1:{ha} ssl crt {pem} alpn http/1.1
  bind 127.0.0.1:{ha2j} ssl crt {pem} alpn h2,http/1.1
{haproxy_peer.jwt_verify(access)}  default_backend be
{haproxy_peer.backend(up)}""")
    ha_proc = start([HAPROXY, "-f", ha_conf, "-db"], stderr=open(os.path.join(work, "ha.err"), "w"))
    # --- sessiongate
    sg, sg_http, sg_admin = free_port(), free_port(), free_port()
    audit = os.path.join(work, "audit.log")
    def sg_conf(port=sg, admin=sg_admin, store='kind = "memory"', name="gateway.toml", extra="", login=None):
        # The login scenario signs one user in from one address on CONNS connections at once,
        # and attempts in flight count against every throttle budget: all three are out of
        # its way (it measures password hashing, not the throttle's 429s).
        login = login or (f'users_file = "{users}"\nmax_failures_per_ip = 1000000\n'
                          'max_failures_per_user = 1000000\nmax_failures_per_user_total = 1000000')
        return write(name, f"""
[server]
listen = "127.0.0.1:{port}"
redirect_listen = ""
admin_listen = "127.0.0.1:{admin}"
public_origin = "https://localhost:{port}"
header_read_timeout = "300s"
# Every client here is 127.0.0.1 (wrk, and the idle scenario's 10,000 idle connections).
max_connections_per_ip = 100000
max_connections = 100000
[tls]
cert = "{cert}"
key = "{key}"
[[upstream]]
name = "app"
url = "http://127.0.0.1:{up}"
[session]
access_ttl = "15m"
refresh_grace = "2m"
# The refresh scenario rotates each session thousands of times a minute (a real client: once per
# access_ttl); the anomaly it would raise on every rotation is not what it measures.
[anomaly]
refresh_rate = "ignore"
[store]
{store}
[keys]
access_secret_env = "SG_ACCESS"
refresh_secret_env = "SG_REFRESH"
[login]
{login}
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
    # BASELINE_BIN=path: another build of sessiongate (e.g. the commit before a change) beside
    # this one, same configuration, in the cookie, h2 and idle scenarios: before and after in
    # one run.
    base_bin = os.environ.get("BASELINE_BIN")
    if base_bin:
        sg_b, sg_b_admin = free_port(), free_port()
        gw_b = start([base_bin, "run", "--config", sg_conf(sg_b, sg_b_admin, name="gateway-baseline.toml")], env=env,
                     stderr=open(os.path.join(work, "sg-baseline.err"), "w"))
        wait_port(sg_b)
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
        # The process behind each target, for its CPU time per request: on a machine this
        # size the load generator, the upstream and the proxy share the cores, so throughput
        # also measures how the scheduler shares them; CPU per request is the proxy's own cost.
        targets = [("nginx", ng), ("haproxy", ha), ("sessiongate", sg)]
        pids = {"nginx": ng_proc.pid, "haproxy": ha_proc.pid, "sessiongate": gw.pid}
        if base_bin:
            targets.append(("sg baseline", sg_b))
            pids["sg baseline"] = gw_b.pid
        rate_limit = '[rate_limit]\nper_session = "100000000/1s"'
        sg_rl, sg_rl_admin = free_port(), free_port()
        pids["sg+rl"] = start([BIN, "run", "--config", sg_conf(sg_rl, sg_rl_admin, name="gateway-rl.toml", extra=rate_limit)],
                              env=env, stderr=open(os.path.join(work, "sg-rl.err"), "w")).pid
        wait_port(sg_rl)
        targets.append(("sg+rl", sg_rl))
        redis_bin = shutil.which("redis-server")
        if redis_bin:
            rp, sg_rr, sg_rr_admin = free_port(), free_port(), free_port()
            start([redis_bin, "--port", str(rp), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", work])
            wait_port(rp)
            conf = sg_conf(sg_rr, sg_rr_admin, f'kind = "redis"\nurl = "redis://127.0.0.1:{rp}/0"', "gateway-rl-redis.toml", rate_limit)
            pids["sg+rl redis"] = start([BIN, "run", "--config", conf], env=env, stderr=open(os.path.join(work, "sg-rl-redis.err"), "w")).pid
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
                row[name] = with_cpu(pids[name], lambda: wrk(f"https://127.0.0.1:{port}/app/item", hdr), lambda res: res["requests"])
                row[name]["cpu_us"] = row[name]["user_us"] + row[name]["sys_us"]
            rounds.append(row)
            print(f"round {r + 1}: " + "  ".join(f"{k} {v['rps']:.0f} rps p50 {v['p50']:.2f}ms p99 {v['p99']:.2f}ms "
                                                 f"cpu {v['cpu_us']:.1f}us/req err {v['errors']}" for k, v in row.items()), flush=True)
        results["cookie"] = rounds
        print("\n## valid cookie (hot path)")
        print("# cpu: the target's own CPU time (all threads and workers) per request served, and its user-space and kernel parts")
        print(f"{'target':<12} {'req/s (median)':>15} {'p50 ms':>8} {'p99 ms':>8} {'cpu us/req':>11} {'user':>6} {'kernel':>7} {'errors':>7}")
        for name in names:
            med = lambda k: statistics.median(x[name][k] for x in rounds)
            print(f"{name:<12} {med('rps'):>15.0f} {med('p50'):>8.2f} {med('p99'):>8.2f} {med('cpu_us'):>11.1f} {med('user_us'):>6.1f}"
                  f" {med('sys_us'):>7.1f} {sum(x[name]['errors'] for x in rounds):>7}")
        tp_ng = [x["sessiongate"]["rps"] / x["nginx"]["rps"] for x in rounds]
        tp_ha = [x["sessiongate"]["rps"] / x["haproxy"]["rps"] for x in rounds]
        p99 = [x["sessiongate"]["p99"] / x["nginx"]["p99"] for x in rounds]
        print(f"sessiongate/nginx throughput per round: {', '.join(f'{v:.2f}' for v in tp_ng)}  median {statistics.median(tp_ng):.2f}  (target >= 1.10)")
        print(f"sessiongate/HAProxy throughput per round: {', '.join(f'{v:.2f}' for v in tp_ha)}  median {statistics.median(tp_ha):.2f}")
        print(f"sessiongate/nginx p99 per round: {', '.join(f'{v:.2f}' for v in p99)}  median {statistics.median(p99):.2f}  (target <= 1.00)")
        for peer in ("nginx", "haproxy") + (("sg baseline",) if base_bin else ()):
            vals, med = median_ratio(rounds, "sessiongate", peer, "cpu_us")
            _, user = median_ratio(rounds, "sessiongate", peer, "user_us")
            _, kernel = median_ratio(rounds, "sessiongate", peer, "sys_us")
            print(f"sessiongate/{peer} CPU per request per round: {', '.join(f'{v:.2f}' for v in vals)}  median {med:.2f}"
                  f" (user space {user:.2f}, kernel {kernel:.2f})")
        for name in names[3:]:
            rl = [x[name]["rps"] / x["sessiongate"]["rps"] for x in rounds]
            print(f"{name}/sessiongate throughput per round: {', '.join(f'{v:.2f}' for v in rl)}  median {statistics.median(rl):.2f}")
    if "profile" in SCENARIOS:
        # CPU profile of the hot path (valid cookie) with perf's software clock: sessiongate's,
        # then nginx's (its workers) under the same load, kernel symbols included.
        print("\n## profile: perf record -e cpu-clock -g on sessiongate, then on nginx, under the valid-cookie load")
        # PERF_DATA=path keeps sessiongate's recording (for perf report --children, perf annotate);
        # PERF_CALL_GRAPH=dwarf gives callers where the release build keeps no frame pointers.
        for name, port, pid_list in (("sessiongate", sg, [gw.pid]), ("nginx", ng, tree_pids(ng_proc.pid))):
            tok = login()["access_token"]
            data = (os.environ.get("PERF_DATA") if name == "sessiongate" else None) or os.path.join(work, f"perf-{name}.data")
            perf = subprocess.Popen(["perf", "record", "-e", "cpu-clock", "-F", "1999", "--call-graph", os.environ.get("PERF_CALL_GRAPH", "fp"),
                                     "-o", data, "-p", ",".join(map(str, pid_list)), "--", "sleep", str(DURATION)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            res = wrk(f"https://127.0.0.1:{port}/app/item", [f"Cookie: __Host-sg-access={tok}", f"User-Agent: {UA}", f"Host: localhost:{sg}"])
            perf.wait(30)
            print(f"\n### {name}: under perf {res['rps']:.0f} req/s, p99 {res['p99']:.2f} ms, errors {res['errors']}")
            rep = subprocess.run(["perf", "report", "-i", data, "--stdio", "--no-children", "--sort", "dso,symbol", "-g", "none", "--percent-limit", "0.7"],
                                 capture_output=True, text=True).stdout
            print("\n".join([" ".join(l.split()[:5])[:150] for l in rep.splitlines() if l.strip() and not l.startswith("#")][:45]))
            kern = subprocess.run(["perf", "report", "-i", data, "--stdio", "--no-children", "--sort", "dso", "-g", "none"], capture_output=True, text=True).stdout
            print("\nby object:\n" + "\n".join([" ".join(l.split()) for l in kern.splitlines() if l.strip() and not l.startswith("#")][:8]))
    if "syscalls" in SCENARIOS:
        # System calls and context switches per request, counted by perf's tracepoints on every
        # process and thread of the target during one wrk run (SCENARIOS=syscalls; needs perf
        # and tracefs): where the kernel half of the CPU goes, side by side.
        print(f"\n## system calls per request (perf stat on each target under wrk -c{CONNS}, valid cookie)")
        events = ["raw_syscalls:sys_enter", "context-switches"] + [f"syscalls:sys_enter_{c}" for c in SYSCALLS]
        counts = {}
        for name, port, pid in (("nginx", ng, ng_proc.pid), ("haproxy", ha, ha_proc.pid), ("sessiongate", sg, gw.pid)):
            tok = login()["access_token"]
            hdr = [f"Cookie: __Host-sg-access={tok}", f"User-Agent: {UA}", f"Host: localhost:{sg}"]
            stat = subprocess.Popen(["perf", "stat", "-x", ",", "-e", ",".join(events), "-p", ",".join(map(str, tree_pids(pid))),
                                     "--", "sleep", str(DURATION)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            res = wrk(f"https://127.0.0.1:{port}/app/item", hdr)
            err = stat.communicate(timeout=30)[1]
            row = {}
            for line in err.splitlines():
                f = line.split(",")
                if len(f) > 2 and f[0].strip().isdigit():
                    row[f[2].replace("syscalls:sys_enter_", "").replace("raw_syscalls:sys_enter", "all")] = int(f[0]) / max(res["requests"], 1)
            counts[name] = row
            print(f"{name:<12} {res['rps']:.0f} req/s under perf stat, errors {res['errors']}", flush=True)
        cols = ["all", "context-switches"] + [c for c in SYSCALLS if any(counts[n].get(c, 0) >= 0.01 for n in counts)]
        print(f"{'per request':<18}" + "".join(f"{n:>13}" for n in counts))
        for c in cols:
            print(f"{c:<18}" + "".join(f"{counts[n].get(c, 0):>13.2f}" for n in counts))
    if "h2" in SCENARIOS:
        print(f"\n## HTTP/2 (h2load -c{CONNS} -m{H2_STREAMS} -t{THREADS} -D {DURATION}s, 1 s warm-up, TLS with ALPN h2, valid cookie)")
        print("# nginx-h2: nginx http2 TLS proxy (keepalive_requests 1000000); haproxy-h2: a plain h2 TLS proxy with no check at all;")
        print("# haproxy-h2 jwt: the jwt_verify frontend, alpn h2; mean/max: h2load's time per request (it prints no percentiles)")
        tok = login()["access_token"]
        h2targets = [("nginx-h2", ng2), ("haproxy-h2", ha2), ("haproxy-h2 jwt", ha2j), ("sessiongate", sg)]
        # Whose CPU time each target's requests cost (HAProxy's two h2 frontends are one process).
        h2pids = {"nginx-h2": ng_proc.pid, "haproxy-h2": ha_proc.pid, "haproxy-h2 jwt": ha_proc.pid, "sessiongate": gw.pid}
        if base_bin:
            h2targets.append(("sg baseline", sg_b))
            h2pids["sg baseline"] = gw_b.pid
        rounds = []
        for r in range(ROUNDS):
            row = {}
            for name, port in h2targets:
                own = port if name.startswith("sg") else sg
                t = tok if own == sg else login(own)["access_token"]
                # h2load counts its measured window; its 1 s warm-up is served too.
                row[name] = with_cpu(h2pids[name],
                                     lambda: h2load(f"https://127.0.0.1:{port}/app/item",
                                                    [f"cookie: __Host-sg-access={t}", f"user-agent: {UA}", f":authority: localhost:{own}"]),
                                     lambda res: res["rps"] * (DURATION + 1))
            rounds.append(row)
            print(f"round {r + 1}: " + "  ".join(f"{k} {v['rps']:.0f} rps mean {v['mean']:.2f}ms err {v['errors']}" for k, v in row.items()), flush=True)
        results["h2"] = rounds
        print("# user, kernel: the target's CPU time per request (µs, over the run and its warm-up), in user space and in the kernel")
        print(f"{'target':<16} {'req/s (median)':>15} {'mean ms':>8} {'max ms':>8} {'user':>6} {'kernel':>7} {'errors':>7}")
        for name, _ in h2targets:
            med = lambda k: statistics.median(x[name][k] for x in rounds)
            print(f"{name:<16} {med('rps'):>15.0f} {med('mean'):>8.2f} {med('max'):>8.2f} {med('user_us'):>6.1f} {med('sys_us'):>7.1f}"
                  f" {sum(x[name]['errors'] for x in rounds):>7}")
        for peer, target in (("haproxy-h2", "target >= 1.00"), ("nginx-h2", "reported beside"), ("haproxy-h2 jwt", "reported beside")):
            vals, med = median_ratio(rounds, "sessiongate", peer)
            print(f"HTTP/2 sessiongate/{peer} throughput per round: {', '.join(f'{v:.2f}' for v in vals)}  median {med:.2f}  ({target})")
    if "idle" in SCENARIOS:
        print(f"\n## idle TLS keep-alive connections: {IDLE_CONNS} per target (TLS 1.3, HTTP/1.1), held by this script")
        print("# RSS of the target's processes (nginx: master and workers) before, after every handshake, and after one request on each")
        tok = login()["access_token"]
        idle = {}
        # Each reading is of a settled process: sessiongate gives what it freed back to the OS
        # every 5 s (src/allocator.rs), so each target is read SETTLE after its last activity
        # (nginx and HAProxy alike): a reading taken before would count memory freed earlier
        # (a load phase, a login's argon2id) for or against the connections.

        def hold(name, port, pid, n=IDLE_CONNS):
            # The token first: a login (argon2id, 19 MiB) between two readings would be counted.
            own = port if name.startswith("sg") else sg
            t = tok if own == sg else login(own)["access_token"]
            time.sleep(SETTLE)
            base = tree_rss_kb(pid)
            socks, t0 = [], time.time()
            for _ in range(n):
                socks.append(ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="localhost"))
            time.sleep(SETTLE)
            shaken = tree_rss_kb(pid)
            req = (f"GET /app/item HTTP/1.1\r\nHost: localhost:{own}\r\nUser-Agent: {UA}\r\nCookie: __Host-sg-access={t}\r\n\r\n").encode()
            bad = 0
            for s in socks:
                # one at a time, as clients that come and go: what stays is what an idle
                # connection holds, not a burst of requests in flight at once
                s.sendall(req)
                bad += read_response(s) != 200
            time.sleep(SETTLE)
            after = tree_rss_kb(pid)
            per = lambda kb: (kb - base) * 1024 / n
            idle[name if n == IDLE_CONNS else f"{name} ({n})"] = {"handshake": per(shaken), "request": per(after), "base": base, "held": after, "bad": bad}
            print(f"{name:<12} opened {n} in {time.time() - t0:.1f}s: RSS {base / 1024:.1f} MB -> {shaken / 1024:.1f} MB (handshaken) -> "
                  f"{after / 1024:.1f} MB (after a request; non-200: {bad})", flush=True)
            return socks
        peers = [("nginx", ng, ng_proc.pid), ("haproxy", ha, ha_proc.pid), ("sessiongate", sg, gw.pid)]
        if base_bin:
            peers.append(("sg baseline", sg_b, gw_b.pid))
        for name, port, pid in peers:
            for s in hold(name, port, pid):
                s.close()
        # sessiongate last: its connections stay open while 64 active ones are loaded.
        hdr = [f"Cookie: __Host-sg-access={tok}", f"User-Agent: {UA}", f"Host: localhost:{sg}"]
        quiet = [wrk(f"https://127.0.0.1:{sg}/app/item", hdr)]
        socks = hold("sessiongate", sg, gw.pid, BESIDE_CONNS)
        busy = [wrk(f"https://127.0.0.1:{sg}/app/item", hdr) for _ in range(ROUNDS)]
        for s in socks:
            s.close()
        time.sleep(1)
        quiet += [wrk(f"https://127.0.0.1:{sg}/app/item", hdr) for _ in range(max(1, ROUNDS - 1))]
        print(f"{'target':<18} {'bytes/conn handshaken':>22} {'bytes/conn after a request':>27}")
        for name, v in idle.items():
            print(f"{name:<18} {v['handshake']:>22.0f} {v['request']:>27.0f}")
        for when in ("handshake", "request"):
            r_ng = idle["sessiongate"][when] / idle["nginx"][when]
            r_ha = idle["sessiongate"][when] / idle["haproxy"][when]
            print(f"idle bytes per connection ({'before any request' if when == 'handshake' else 'after a request'}): "
                  f"sessiongate/nginx {r_ng:.2f}, sessiongate/HAProxy {r_ha:.2f}  (target: sessiongate/nginx <= 1.00)")
        q, b = statistics.median(x["rps"] for x in quiet), statistics.median(x["rps"] for x in busy)
        fmt = lambda xs: ", ".join(f"{x['rps']:.0f}" for x in xs)
        print(f"{CONNS} active connections beside {BESIDE_CONNS} idle ones: {fmt(busy)} req/s; "
              f"without them: {fmt(quiet)} req/s; median ratio {b / q:.3f}  (target >= 0.95); "
              f"errors {sum(x['errors'] for x in busy + quiet)}")
    if "redis" in SCENARIOS or "refresh" in SCENARIOS:
        # Refresh chains: each wrk request presents a refresh token no request has presented
        # yet (the last answer's), so every one rotates; REFRESH_CHAINS sessions, tokens handed
        # from response to request by a wrk script.
        chains = int(os.environ.get("REFRESH_CHAINS", str(2 * CONNS)))
        chain_lua = lambda path: write(os.path.basename(path) + ".lua", f"""
local tokens = {{}}
for line in io.lines("{path}") do tokens[#tokens + 1] = line end
local spare = tokens[1]
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  local t = table.remove(tokens) or spare
  return wrk.format(nil, nil, nil, '{{"refresh_token":"' .. t .. '"}}')
end
response = function(status, headers, body)
  local t = body:match('"refresh_token":"([^"]+)"')
  if t then tokens[#tokens + 1] = t end
end
""")
        def refresh_rounds(port, tokens, label, gw_pid, redis=None):
            """`redis`: (port, pid) of the store, whose CPU and script time per refresh are
            printed beside the gateway's."""
            vals = []
            for r in range(ROUNDS):
                path = write(f"chains-{label}-{r}", "\n".join(tokens(r)) + "\n")
                cpu0 = cpu_seconds(gw_pid)
                if redis:
                    rcpu0, stats0 = cpu_seconds(redis[1]), redis_commandstats(redis[0])
                v = wrk(f"https://127.0.0.1:{port}/.auth/refresh", [f"User-Agent: {UA}", f"Host: localhost:{port}"], script=chain_lua(path))
                n = max(v["requests"], 1)
                line = f"refresh round {r + 1} ({label}): {v['rps']:.0f} rps p50 {v['p50']:.2f}ms p99 {v['p99']:.2f}ms errors {v['errors']}"
                line += f" gateway cpu {(cpu_seconds(gw_pid) - cpu0) * 1e6 / n:.1f}us/refresh"
                if redis:
                    stats1 = redis_commandstats(redis[0])
                    # A script's time includes the commands it calls, which are counted too.
                    delta = {k: (c - stats0.get(k, (0, 0))[0], u - stats0.get(k, (0, 0))[1]) for k, (c, u) in stats1.items()}
                    scripts = [delta.pop(k, (0, 0)) for k in ("evalsha", "eval")]
                    delta.pop("info", None)
                    line += (f" redis cpu {(cpu_seconds(redis[1]) - rcpu0) * 1e6 / n:.1f}us/refresh"
                             f" ({sum(c for c, _ in scripts) / n:.2f} scripts/refresh calling"
                             f" {sum(c for c, _ in delta.values()) / n:.1f} commands, {sum(u for _, u in scripts) / n:.1f}us in scripts)")
                print(line, flush=True)
                vals.append(v)
            return vals
        print(f"\n## refresh path: JSON POST /.auth/refresh, {chains} sessions chained (every request rotates), wrk -c{CONNS}")
        mem = refresh_rounds(sg, lambda r: [login()["refresh_token"] for _ in range(chains)], "memory store", gw.pid)
        print(f"refresh median (memory store): {statistics.median(v['rps'] for v in mem):.0f} req/s")
    redis_bin = shutil.which("redis-server")
    if ("redis" in SCENARIOS or "refresh" in SCENARIOS) and not redis_bin:
        print("Redis scenarios skipped: redis-server is not installed (apt-get install redis-server)")
    elif "redis" in SCENARIOS or "refresh" in SCENARIOS:
        # A gateway in upstream-login mode on a fresh Redis: sessions start through the app's
        # signed grant (the upstream's /login answers with the grant the client asks for).
        rp, sg_g, sg_g_admin = free_port(), free_port(), free_port()
        redis_pid = start([redis_bin, "--port", str(rp), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", work]).pid
        wait_port(rp)
        grant_secret = secrets.token_urlsafe(32)
        conf = sg_conf(sg_g, sg_g_admin, f'kind = "redis"\nurl = "redis://127.0.0.1:{rp}/0"', "gateway-grant.toml",
                       login='mode = "upstream"\nupstream_path = "/login"\ngrant_secret_env = "SG_GRANT"')
        gw_g = start([BIN, "run", "--config", conf], env=dict(env, SG_GRANT=grant_secret), stderr=open(os.path.join(work, "sg-grant.err"), "w"))
        wait_port(sg_g)
        import http.client
        conn = http.client.HTTPSConnection("127.0.0.1", sg_g, context=ctx, timeout=10)
        def grant_session(user, ua):
            claims = {"sub": user, "roles": ["staff", "reader"], "exp": int(time.time()) + 50}
            conn.request("POST", "/login", body="username=x&password=y",
                         headers={"Host": f"localhost:{sg_g}", "User-Agent": ua, "X-Test-Grant": hs256(grant_secret.encode(), claims),
                                  "Content-Type": "application/x-www-form-urlencoded"})
            r = conn.getresponse()
            r.read()
            for c in r.headers.get_all("Set-Cookie") or []:
                if c.startswith("__Host-sg-refresh="):
                    return c.split("=", 1)[1].split(";", 1)[0]
            raise SystemExit(f"the grant started no session ({r.status}); see {work}/sg-grant.err")
        def rotate(rt, ua):
            conn.request("POST", "/.auth/refresh", body=json.dumps({"refresh_token": rt}),
                         headers={"Host": f"localhost:{sg_g}", "User-Agent": ua, "Content-Type": "application/json"})
            r = conn.getresponse()
            body = r.read()
            if r.status != 200:
                raise SystemExit(f"refresh answered {r.status}: {body[:200]!r}")
        if "redis" in SCENARIOS:
            n_sessions, n_users = int(os.environ.get("REDIS_SESSIONS", "10000")), int(os.environ.get("REDIS_USERS", "1000"))
            uas = ["Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
                   "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
                   "Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0",
                   "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"]
            before, stats0 = redis_used_memory(rp), redis_stats(rp)
            t0 = time.time()
            started = []
            for i in range(n_sessions):
                u = i % n_users
                # each user on two devices of the four
                ua = uas[(u + (i // n_users) % 2) % len(uas)]
                started.append((grant_session(f"user{u:05}@example.com", ua), ua))
            fresh = redis_used_memory(rp)
            breakdown, stats1 = redis_breakdown(rp, n_sessions), redis_stats(rp)
            for rt, ua in started:
                rotate(rt, ua)
            rotated, stats2 = redis_used_memory(rp), redis_stats(rp)
            breakdown2 = redis_breakdown(rp, n_sessions)
            parts = ("dataset.bytes", "overhead.hashtable.main", "overhead.hashtable.expires", "clients.normal", "lua.caches")
            growth = lambda a, b: ", ".join(f"{k} {(b.get(k, 0) - a.get(k, 0)) / n_sessions:.0f}" for k in parts)
            per = lambda b: (b - before) / n_sessions
            print(f"\n## Redis memory per stored session ({n_sessions} sessions of {n_users} users started through the app's signed grant, "
                  f"{time.time() - t0:.0f}s; used_memory growth / sessions)")
            print("where they are, as started (MEMORY USAGE per key, by kind of key, per session): " +
                  ", ".join(f"{k} {v:.0f}" for k, v in breakdown) + "; after a rotation: " + ", ".join(f"{k} {v:.0f}" for k, v in breakdown2))
            print(f"MEMORY STATS growth per session, as started: {growth(stats0, stats1)}; after a rotation: {growth(stats0, stats2)}")
            print(f"bytes per session: {per(fresh):.0f} as started, {per(rotated):.0f} once each has rotated its refresh token once  (target <= 500)")
        # The refresh path on Redis, beside redis-benchmark's EVALSHA on the same Redis.
        vals = refresh_rounds(sg_g, lambda r: [grant_session(f"chain{r}-{i}@example.com", UA) for i in range(chains)], "redis store",
                              gw_g.pid, (rp, redis_pid))
        rotate_like = ("local h = redis.call('HGETALL', KEYS[1]) "
                       "redis.call('HSET', KEYS[1], 'prev', ARGV[1], 'cur', ARGV[1]) return #h")
        sha = subprocess.run(["redis-cli", "-p", str(rp), "SCRIPT", "LOAD", rotate_like], capture_output=True, text=True, timeout=10).stdout.strip()
        ev = []
        for r in range(ROUNDS):
            out = subprocess.run(["redis-benchmark", "-p", str(rp), "-c", str(CONNS), "-n", "200000", "-r", "100000", "-q",
                                  "EVALSHA", sha, "1", "bench:{u}:s:__rand_int__", "jti"], capture_output=True, text=True, timeout=120).stdout
            ev.append(float(re.findall(r"([\d.]+) requests per second", out)[-1]))
        ev_calls, ev_usec = redis_commandstats(rp).get("evalsha", (0, 0))
        g, e = statistics.median(v["rps"] for v in vals), statistics.median(ev)
        print(f"redis-benchmark EVALSHA (rotate-shaped script: HGETALL + HSET, -c{CONNS}) per round: {', '.join(f'{x:.0f}' for x in ev)}"
              f"  (all EVALSHA on this Redis so far: {ev_usec / max(ev_calls, 1):.1f}us per call)")
        print(f"refresh median (redis store): {g:.0f} req/s = {g / e:.2f} of redis-benchmark EVALSHA ({e:.0f}/s) on the same Redis, same run")
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
        if any(v["errors"] for v in vals):
            # What a refused login is answered, once the load has stopped.
            try:
                login()
                print("a login after the rounds: 200")
            except urllib.error.HTTPError as e:
                print(f"a login after the rounds: {e.code} {e.read()[:200]!r}")



if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    try:
        main()
    finally:
        cleanup()
