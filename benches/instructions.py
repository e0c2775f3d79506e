#!/usr/bin/env python3
"""Instructions per proxied request (valid session cookie, keep-alive over TLS, HTTP/1.1 or
HTTP/2), counted by callgrind: repeatable for the same binary and input whatever else the
machine is doing, where throughput on a small shared machine is not. User space only (the
kernel's share is the same for every build). memcpy/memmove are also reported apart: callgrind
counts a large copy (glibc's `rep movsb`, 2 KiB and more) as about one instruction per byte.
Measures this checkout's release build, and BASELINE_BIN beside it.

    benches/instructions.py                       # this build
    BASELINE_BIN=/path/to/old benches/instructions.py
    REQUESTS=4000 benches/instructions.py
    KEEP=/tmp benches/instructions.py             # keep the dumps: callgrind_annotate /tmp/this.callgrind
    PROTO=h2 benches/instructions.py              # HTTP/2: 4 connections x 10 streams (default h1)
    PEERS=1 benches/instructions.py               # and the peers, and this build on a public route

PEERS=1 also counts, under the same load: this build on a public route with no cookie (the same
proxy without the session check and identity headers), nginx as a plain TLS proxy (one worker,
upstream keep-alive), and HAProxy with jwt_verify on the cookie and as a plain TLS proxy (one
thread): where a request's user-space instructions go, beside what the peers spend.

Needs valgrind, nginx (the upstream) and h2load (nghttp2-client); PEERS=1 haproxy too. Stops by
itself."""
import collections, json, os, re, secrets, shutil, socket, ssl, subprocess, sys, tempfile, time, urllib.request

import haproxy_peer  # benches/haproxy_peer.py: the HAProxy peer, configured as the other bench does

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("SG_BIN") or os.path.join(ROOT, "target", "release", "sessiongate")
UA = "sessiongate-instructions/1"
REQUESTS = int(os.environ.get("REQUESTS", "2000"))
PROTO = os.environ.get("PROTO", "h1")
PEERS = os.environ.get("PEERS") == "1"
if PROTO not in ("h1", "h2"):
    raise SystemExit("PROTO is h1 or h2")
# h1: HTTP/1.1 keep-alive; h2: ten concurrent streams on each connection, as a browser opens them.
H2LOAD_MODE = ["--h1"] if PROTO == "h1" else ["-m", "10"]
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
work = tempfile.mkdtemp(prefix="sg-instr-")
procs = []


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_port(port, timeout=120):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"nothing listens on {port}")


def write(name, text):
    path = os.path.join(work, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def sessiongate(binary, label, up, cert, key, users, password, env):
    """Start `binary` under callgrind (instrumentation off) with one serving thread; its
    process, port and a session's access token."""
    port, admin = free_port(), free_port()
    conf = write(f"{label}.toml", f"""
[server]
listen = "127.0.0.1:{port}"
redirect_listen = ""
admin_listen = "127.0.0.1:{admin}"
public_origin = "https://localhost:{port}"
workers = 1
[tls]
cert = "{cert}"
key = "{key}"
[[upstream]]
name = "app"
url = "http://127.0.0.1:{up}"
[[route]]
path_prefix = "/pub/"
public = true
[store]
kind = "memory"
[keys]
access_secret_env = "SG_ACCESS"
refresh_secret_env = "SG_REFRESH"
[login]
users_file = "{users}"
[log]
level = "warn"
[access_log]
enabled = false
""")
    p = under_callgrind(label, [binary, "run", "--config", conf], env)
    wait_port(port)
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    req = urllib.request.Request(f"https://127.0.0.1:{port}/.auth/login", data=json.dumps({"username": "bench", "password": password}).encode(),
                                 headers={"Content-Type": "application/json", "Host": f"localhost:{port}", "User-Agent": UA})
    with urllib.request.urlopen(req, context=ctx, timeout=120) as r:
        tok = json.loads(r.read())["access_token"]
    return p, port, tok


def under_callgrind(label, argv, env=None):
    p = subprocess.Popen(["valgrind", "--tool=callgrind", f"--callgrind-out-file={os.path.join(work, label)}.callgrind",
                          "--instr-atstart=no", *argv], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs.append(p)
    return p


def count(p, label, port, authority, path, tok=None, dump=1, shown=None):
    """User-space instructions per request (and those in memcpy/memmove) of process `p` under
    REQUESTS requests to `path`, with the session cookie when `tok` is given. `dump` numbers
    callgrind's dumps of this process (1 for its first count, 2 for its second); `shown` names
    the count in the breakdown PEERS=1 prints (default `label`)."""
    out = os.path.join(work, f"{label}.callgrind")
    cookie = ["-H", f"cookie: __Host-sg-access={tok}"] if tok else []
    load = lambda n: subprocess.run(["h2load", *H2LOAD_MODE, "-n", str(n), "-c", "4", *cookie,
                                     "-H", f"user-agent: {UA}", "-H", f":authority: {authority}",
                                     f"https://127.0.0.1:{port}{path}"], capture_output=True, text=True, timeout=600).stdout
    load(200)  # warm: connections, pools, caches
    subprocess.run(["callgrind_control", "--instr=on", str(p.pid)], capture_output=True, timeout=60)
    res = load(REQUESTS)
    subprocess.run(["callgrind_control", "--dump", str(p.pid)], capture_output=True, timeout=120)
    subprocess.run(["callgrind_control", "--instr=off", str(p.pid)], capture_output=True, timeout=60)
    if f"{REQUESTS} succeeded" not in res and f"{REQUESTS} done, {REQUESTS} succeeded" not in res:
        raise SystemExit(f"{label}: not every request succeeded:\n{res}")
    if f"status codes: {REQUESTS} 2xx" not in res:
        raise SystemExit(f"{label}: not every request was answered 2xx:\n{res}")
    # The dump asked for above (the one valgrind writes at exit counts the shutdown too).
    total = 0
    with open(f"{out}.{dump}") as f:
        for line in f:
            if line.startswith("totals:"):
                total = int(line.split()[1])
    # memcpy/memmove: callgrind counts a `rep movsb` once per byte, and glibc copies 2 KiB and
    # more that way, so a large copy counts about one instruction per byte where the CPU moves
    # tens of bytes per cycle. Reported apart, so that a change in copies is not read as one in
    # work.
    annotated = subprocess.run(["callgrind_annotate", "--threshold=100", f"{out}.{dump}"], capture_output=True, text=True, timeout=120).stdout
    parts = components(annotated)
    copies = parts.get("memcpy/memmove", 0)
    if PEERS:
        # Each connection's handshake is in the window too (4 connections): REQUESTS large
        # enough (2,000 by default) keeps its share small.
        print(f"  {shown or label}: " + ", ".join(f"{k} {v / REQUESTS:,.0f}" for k, v in parts.most_common(10)
                                         if v >= total / 100), flush=True)
    if os.environ.get("KEEP"):
        # KEEP=dir: the dump, for callgrind_annotate
        os.makedirs(os.environ["KEEP"], exist_ok=True)
        shutil.copy(f"{out}.{dump}", os.path.join(os.environ["KEEP"], f"{label}.callgrind" if dump == 1 else f"{label}.{dump}.callgrind"))
    return total / REQUESTS, copies / REQUESTS


def components(annotated):
    """Exclusive instructions by where they ran: a Rust crate (a symbol's first path segment),
    a library (libssl, libcrypto), the peer's own binary, memcpy/memmove apart."""
    parts = collections.Counter()
    for line in annotated.splitlines():
        m = re.match(r"\s*([\d,]+) \([^)]*\)\s+\S*?:(.*) \[(.*)\]$", line)
        if not m:
            continue
        ir, fn, obj = int(m.group(1).replace(",", "")), m.group(2).lstrip("<"), os.path.basename(m.group(3))
        if "__memcpy" in fn or "__memmove" in fn:
            part = "memcpy/memmove"
        elif obj.startswith(("libssl", "libcrypto", "libc.", "libc-")):
            part = obj.split(".")[0]
        elif obj in ("nginx", "haproxy"):
            part = obj
        elif fn.startswith(("mi_", "_mi_")):
            part = "mimalloc"
        elif fn.startswith(("ring_core_", "_aesni", "aes", "gcm", "sha", "fe_", "x25519")):
            part = "ring"
        else:
            part = re.split(r"::|<| as ", fn)[0].strip() or obj
            part = "core/alloc/std" if part in ("core", "alloc", "std") else part
        parts[part] += ir
    return parts


def stop(p):
    p.terminate()
    p.wait(120)


def peers(up, cert, key, access):
    """nginx (plain TLS proxy) and HAProxy (jwt_verify on the cookie, and plain) under
    callgrind, one worker or thread each, the same upstream and load: label, process, port."""
    ng = free_port()
    http2 = " http2" if PROTO == "h2" else ""
    ng_conf = write("nginx-proxy.conf", f"""
master_process off; worker_processes 1; daemon off; pid {work}/ng.pid; error_log {work}/ng.err warn;
events {{ worker_connections 1024; }}
http {{ access_log off; keepalive_requests 1000000; keepalive_timeout 300s;
  upstream app {{ server 127.0.0.1:{up}; keepalive 128; }}
  server {{ listen 127.0.0.1:{ng} ssl{http2}; ssl_certificate {cert}; ssl_certificate_key {key};
    location / {{ proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; }} }} }}""")
    out = [("nginx", under_callgrind("nginx", [NGINX, "-c", ng_conf, "-p", work]), ng)]
    # The jwt_verify frontend as benches/load.py configures it (HS256, the gateway's access
    # secret, exp checked), and a plain one.
    alpn = "h2,http/1.1" if PROTO == "h2" else "http/1.1"
    haj, hap = free_port(), free_port()
    pem = write("haproxy.pem", open(cert).read() + open(key).read())
    ha_conf = write("haproxy.cfg", f"""
global
  nbthread 1
{haproxy_peer.DEFAULTS}frontend fe
  bind 127.0.0.1:{haj} ssl crt {pem} alpn {alpn}
{haproxy_peer.jwt_verify(access)}  default_backend be
frontend fe_plain
  bind 127.0.0.1:{hap} ssl crt {pem} alpn {alpn}
  default_backend be
{haproxy_peer.backend(up)}""")
    ha = under_callgrind("haproxy", [HAPROXY, "-f", ha_conf, "-db"])
    out += [("haproxy jwt_verify", ha, haj), ("haproxy plain", ha, hap)]
    for _, _, port in out:
        wait_port(port)
    return out


def main():
    for tool in ("valgrind", "callgrind_control", "h2load") + (("haproxy",) if PEERS else ()):
        if not shutil.which(tool):
            raise SystemExit(f"instructions.py needs {tool} (apt-get install valgrind nghttp2-client)")
    cert, key = os.path.join(work, "cert.pem"), os.path.join(work, "key.pem")
    subprocess.run([BIN, "dev-cert", "--cert", cert, "--key", key], check=True, capture_output=True)
    password = secrets.token_urlsafe(12)
    phc = subprocess.run([BIN, "hash-password"], input=password, capture_output=True, text=True, check=True).stdout.strip()
    users = write("users.toml", f'[[user]]\nname = "bench"\npassword_hash = "{phc}"\nroles = ["bench"]\n')
    up = free_port()
    procs.append(subprocess.Popen([NGINX, "-c", write("upstream.conf", f"""
worker_processes 1; daemon off; pid {work}/up.pid; error_log {work}/up.err warn;
events {{ worker_connections 1024; }}
http {{ access_log off; keepalive_requests 1000000;
  server {{ listen 127.0.0.1:{up}; location / {{ return 200 "ok\\n"; }} }} }}"""), "-p", work]))
    wait_port(up)
    access = secrets.token_urlsafe(32)
    env = dict(os.environ, SG_ACCESS=access, SG_REFRESH=secrets.token_urlsafe(32))
    env.pop("RUST_LOG", None)
    builds = [("this", BIN)] + ([("baseline", os.environ["BASELINE_BIN"])] if os.environ.get("BASELINE_BIN") else [])
    got = {}

    def report(label, what, per_request, copied):
        got[label], got[label + " without copies"] = per_request, per_request - copied
        print(f"{label} ({what}): {per_request:,.0f} instructions per request ({REQUESTS} requests over {PROTO}, callgrind, user space);"
              f" {copied:,.0f} of them in memcpy/memmove, {per_request - copied:,.0f} without", flush=True)

    tok = None
    for label, binary in builds:
        p, port, tok = sessiongate(binary, label, up, cert, key, users, password, env)
        report(label, binary, *count(p, label, port, f"localhost:{port}", "/app/item", tok))
        if PEERS and label == "this":
            report("this, public route", "/pub/item, no cookie: no session check, no identity headers",
                   *count(p, label, port, f"localhost:{port}", "/pub/item", dump=2, shown="this, public route"))
        stop(p)
    if "baseline" in got:
        print(f"this/baseline: {got['this'] / got['baseline']:.3f}; without memcpy/memmove:"
              f" {got['this without copies'] / got['baseline without copies']:.3f}")
    if PEERS:
        started = peers(up, cert, key, access)
        dumps = {}
        for label, p, port in started:
            dumps[p.pid] = dumps.get(p.pid, 0) + 1
            base = label.split()[0]
            report(label, "1 worker" if base == "nginx" else "1 thread",
                   *count(p, base, port, "localhost", "/app/item", tok, dumps[p.pid], shown=label))
        for _, p, _ in started:
            if p.poll() is None:
                stop(p)
        for peer in ("this, public route", "nginx", "haproxy jwt_verify", "haproxy plain"):
            print(f"this/{peer}: {got['this'] / got[peer]:.2f}; without memcpy/memmove:"
                  f" {got['this without copies'] / got[peer + ' without copies']:.2f}")


if __name__ == "__main__":
    try:
        main()
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(work, ignore_errors=True)
