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

Needs valgrind, nginx (the upstream) and h2load (nghttp2-client). Stops by itself."""
import json, os, secrets, shutil, socket, ssl, subprocess, sys, tempfile, time, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("SG_BIN") or os.path.join(ROOT, "target", "release", "sessiongate")
UA = "sessiongate-instructions/1"
REQUESTS = int(os.environ.get("REQUESTS", "2000"))
PROTO = os.environ.get("PROTO", "h1")
if PROTO not in ("h1", "h2"):
    raise SystemExit("PROTO is h1 or h2")
# h1: HTTP/1.1 keep-alive; h2: ten concurrent streams on each connection, as a browser opens them.
H2LOAD_MODE = ["--h1"] if PROTO == "h1" else ["-m", "10"]
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
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


def measure(binary, label, up, cert, key, users, password, env):
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
    out = os.path.join(work, f"{label}.callgrind")
    p = subprocess.Popen(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "--instr-atstart=no",
                          binary, "run", "--config", conf], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs.append(p)
    wait_port(port)
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    req = urllib.request.Request(f"https://127.0.0.1:{port}/.auth/login", data=json.dumps({"username": "bench", "password": password}).encode(),
                                 headers={"Content-Type": "application/json", "Host": f"localhost:{port}", "User-Agent": UA})
    with urllib.request.urlopen(req, context=ctx, timeout=120) as r:
        tok = json.loads(r.read())["access_token"]
    load = lambda n: subprocess.run(["h2load", *H2LOAD_MODE, "-n", str(n), "-c", "4", "-H", f"cookie: __Host-sg-access={tok}",
                                     "-H", f"user-agent: {UA}", "-H", f":authority: localhost:{port}",
                                     f"https://127.0.0.1:{port}/app/item"], capture_output=True, text=True, timeout=600).stdout
    load(200)  # warm: connections, pools, caches
    subprocess.run(["callgrind_control", "--instr=on", str(p.pid)], capture_output=True, timeout=60)
    res = load(REQUESTS)
    subprocess.run(["callgrind_control", "--dump", str(p.pid)], capture_output=True, timeout=120)
    subprocess.run(["callgrind_control", "--instr=off", str(p.pid)], capture_output=True, timeout=60)
    p.terminate()
    p.wait(120)
    if f"{REQUESTS} succeeded" not in res and f"{REQUESTS} done, {REQUESTS} succeeded" not in res:
        raise SystemExit(f"{label}: not every request succeeded:\n{res}")
    # The dump asked for above (the one valgrind writes at exit counts the shutdown too).
    total = 0
    with open(f"{out}.1") as f:
        for line in f:
            if line.startswith("totals:"):
                total = int(line.split()[1])
    # memcpy/memmove: callgrind counts a `rep movsb` once per byte, and glibc copies 2 KiB and
    # more that way, so a large copy counts about one instruction per byte where the CPU moves
    # tens of bytes per cycle. Reported apart, so that a change in copies is not read as one in
    # work.
    copies = 0
    annotated = subprocess.run(["callgrind_annotate", "--threshold=100", f"{out}.1"], capture_output=True, text=True, timeout=120).stdout
    for line in annotated.splitlines():
        if "__memcpy" in line or "__memmove" in line:
            try:
                copies += int(line.split()[0].replace(",", ""))
            except ValueError:
                pass
    if os.environ.get("KEEP"):
        # KEEP=dir: the dump, for callgrind_annotate
        os.makedirs(os.environ["KEEP"], exist_ok=True)
        shutil.copy(f"{out}.1", os.path.join(os.environ["KEEP"], f"{label}.callgrind"))
    return total / REQUESTS, copies / REQUESTS


def main():
    for tool in ("valgrind", "callgrind_control", "h2load"):
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
    env = dict(os.environ, SG_ACCESS=secrets.token_urlsafe(32), SG_REFRESH=secrets.token_urlsafe(32))
    env.pop("RUST_LOG", None)
    builds = [("this", BIN)] + ([("baseline", os.environ["BASELINE_BIN"])] if os.environ.get("BASELINE_BIN") else [])
    got = {}
    for label, binary in builds:
        got[label], copied = measure(binary, label, up, cert, key, users, password, env)
        print(f"{label} ({binary}): {got[label]:,.0f} instructions per request ({REQUESTS} requests over {PROTO}, callgrind, user space);"
              f" {copied:,.0f} of them in memcpy/memmove, {got[label] - copied:,.0f} without", flush=True)
        got[label + " without copies"] = got[label] - copied
    if "baseline" in got:
        print(f"this/baseline: {got['this'] / got['baseline']:.3f}; without memcpy/memmove:"
              f" {got['this without copies'] / got['baseline without copies']:.3f}")


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
