#!/usr/bin/env python3
"""A real upstream for sessiongate's end-to-end tests (Python 3.11 stdlib only).

Usage: python3 tests/upstream.py --port 0 [--journal-stdout]
                                 [--tls-cert CERT --tls-key KEY [--tls-client-ca CA]]

Binds 127.0.0.1:PORT (0 = a free port), prints `upstream listening 127.0.0.1:PORT` on stdout
once ready, and answers every request (any method, any path) with `200` and a JSON echo:
    {"method", "path" (raw target path, no query), "query" (raw query or ""),
     "headers": {lower-case name: [values in order]}, "body": <body as text>,
     "peer_port": <the gateway's source port: which connection carried the request>}

Special cases:
  GET /__journal          JSON list of {"method","path","query"} of every request received so
                          far, except /__journal itself (tests ask it directly, to prove the
                          gateway did not forward something).
  .../set-cookie          the echo also carries `Set-Cookie: appcookie=v1; Path=/`.
  X-Test-Grant: <jwt>     the echo also carries `X-Sessiongate-Grant: <jwt>` (upstream login:
                          the test chooses the grant the app "issues").
  X-Test-Set-Cookie: <v>  the echo also carries `Set-Cookie: <v>` (once per request header).
  .../slow                answers only after `ms` milliseconds (query `ms=N`, default 3000, at
                          most 60000): a slow app, for clients that go away while they wait. The
                          journal has the request as soon as it arrives.
  .../close-idle          answers as usual, then closes the connection without saying so (no
                          `Connection: close`): a keep-alive connection the app dropped while
                          the gateway kept it idle.
  Upgrade: websocket      RFC 6455 handshake (101), then echoes text/binary frames until close.
                          Two text messages are commands instead: `push N MS` sends N text
                          frames `push 1`..`push N`, one every MS milliseconds, and `mute` /
                          `unmute` stop and restart the echo (traffic in one direction only).
                          When the connection ends, the journal gets {"method": "WS-CLOSED",
                          "path", "query": "close-frame" | "eof" | "error"}.

With --journal-stdout every journal entry is also printed on stdout as `journal <json>`.

With --tls-cert and --tls-key it serves HTTPS (TLS 1.2+) instead, and every echo carries
"tls": {"sni": <server name the client sent, or null>, "client_cert": <subject CN of the
client's certificate, or null>}. With --tls-client-ca it also requires a client certificate
signed by that CA (mutual TLS): a handshake without one fails.
"""

import argparse
import base64
import hashlib
import json
import socket
import ssl
import struct
import sys
import threading
import time
from urllib.parse import parse_qs
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

JOURNAL = []
JOURNAL_LOCK = threading.Lock()
JOURNAL_STDOUT = False
STDOUT_LOCK = threading.Lock()


def record(method, path, query):
    entry = {"method": method, "path": path, "query": query}
    with JOURNAL_LOCK:
        JOURNAL.append(entry)
    if JOURNAL_STDOUT:
        with STDOUT_LOCK:
            sys.stdout.write("journal " + json.dumps(entry) + "\n")
            sys.stdout.flush()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "e2e-upstream"

    def version_string(self):
        return self.server_version

    # Any method name maps to the same handler (BaseHTTPRequestHandler looks up `do_<METHOD>`).
    def __getattr__(self, name):
        if name.startswith("do_"):
            return self.handle_any
        raise AttributeError(name)

    def log_message(self, format, *args):  # quiet: tests read the journal instead
        pass

    # --- helpers -------------------------------------------------------------------------

    def split_target(self):
        target = self.path
        if "?" in target:
            path, query = target.split("?", 1)
        else:
            path, query = target, ""
        return path, query

    def read_exact(self, n):
        data = b""
        while len(data) < n:
            chunk = self.rfile.read(n - len(data))
            if not chunk:
                raise ConnectionError("short body")
            data += chunk
        return data

    def read_body(self):
        te = ",".join(self.headers.get_all("Transfer-Encoding") or []).lower()
        if "chunked" in te:
            body = b""
            while True:
                line = self.rfile.readline(65537)
                if not line:
                    raise ConnectionError("eof in chunked body")
                size = int(line.split(b";", 1)[0].strip(), 16)
                if size == 0:
                    # trailers until an empty line
                    while True:
                        trailer = self.rfile.readline(65537)
                        if trailer in (b"\r\n", b"\n", b""):
                            break
                    break
                body += self.read_exact(size)
                self.rfile.readline(3)  # CRLF after each chunk
            return body
        length = self.headers.get("Content-Length")
        if length is not None:
            return self.read_exact(int(length))
        return b""

    def tls_json(self):
        conn = self.connection
        if not isinstance(conn, ssl.SSLSocket):
            return None
        cert = conn.getpeercert()
        cn = None
        for rdn in (cert or {}).get("subject", ()):
            for key, value in rdn:
                if key == "commonName":
                    cn = value
        return {"sni": getattr(conn, "sg_sni", None), "client_cert": cn}

    def headers_json(self):
        out = {}
        for name, value in self.headers.items():
            out.setdefault(name.lower(), []).append(value)
        return out

    def send_json(self, status, obj, extra_headers=()):
        payload = json.dumps(obj).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in extra_headers:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)
        self.wfile.flush()

    # --- request handling -----------------------------------------------------------------

    def handle_any(self):
        path, query = self.split_target()

        if path == "/__journal" and self.command == "GET":
            self.read_body()
            with JOURNAL_LOCK:
                snapshot = list(JOURNAL)
            self.send_json(200, snapshot)
            return

        record(self.command, path, query)

        upgrade = ",".join(self.headers.get_all("Upgrade") or []).lower()
        if "websocket" in upgrade:
            self.websocket(path, query)
            return

        body = self.read_body()
        if path.endswith("/slow"):
            time.sleep(slow_ms(query) / 1000.0)
        echo = {
            "method": self.command,
            "path": path,
            "query": query,
            "headers": self.headers_json(),
            "body": body.decode("utf-8", errors="replace"),
            "peer_port": self.client_address[1],
        }
        tls = self.tls_json()
        if tls is not None:
            echo["tls"] = tls
        extra = []
        if path.endswith("/set-cookie"):
            extra.append(("Set-Cookie", "appcookie=v1; Path=/"))
        grant = self.headers.get("X-Test-Grant")
        if grant is not None:
            extra.append(("X-Sessiongate-Grant", grant))
        for cookie in self.headers.get_all("X-Test-Set-Cookie") or []:
            extra.append(("Set-Cookie", cookie))
        self.send_json(200, echo, extra)
        if path.endswith("/close-idle"):
            self.close_connection = True

    # --- WebSocket (RFC 6455) ---------------------------------------------------------------

    def websocket(self, path, query):
        key = self.headers.get("Sec-WebSocket-Key")
        if not key:
            self.send_json(400, {"error": "missing Sec-WebSocket-Key"})
            self.close_connection = True
            return
        accept = base64.b64encode(hashlib.sha1((key.strip() + WS_GUID).encode()).digest()).decode()
        self.send_response(101, "Switching Protocols")
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        # Let a test see which identity reached the upgraded request.
        user = self.headers.get("X-Auth-User")
        if user is not None:
            self.send_header("X-Echo-Auth-User", user)
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True
        self.ws_lock = threading.Lock()
        self.ws_muted = False
        how = "error"
        try:
            how = self.ws_loop()
        except ConnectionError:
            how = "eof"
        except (OSError, ValueError):
            how = "error"
        record("WS-CLOSED", path, how)

    def ws_push(self, count, interval_ms):
        try:
            for i in range(1, count + 1):
                time.sleep(interval_ms / 1000.0)
                self.ws_send(0x1, f"push {i}".encode())
        except (OSError, ValueError):
            pass

    def ws_send(self, opcode, payload):
        header = bytes([0x80 | opcode])
        n = len(payload)
        if n < 126:
            header += bytes([n])
        elif n < 65536:
            header += bytes([126]) + struct.pack("!H", n)
        else:
            header += bytes([127]) + struct.pack("!Q", n)
        with self.ws_lock:
            self.wfile.write(header + payload)
            self.wfile.flush()

    def ws_loop(self):
        while True:
            b0, b1 = self.read_exact(2)
            opcode = b0 & 0x0F
            masked = b1 & 0x80
            n = b1 & 0x7F
            if n == 126:
                (n,) = struct.unpack("!H", self.read_exact(2))
            elif n == 127:
                (n,) = struct.unpack("!Q", self.read_exact(8))
            mask = self.read_exact(4) if masked else b"\0\0\0\0"
            data = bytearray(self.read_exact(n))
            for i in range(len(data)):
                data[i] ^= mask[i % 4]
            data = bytes(data)
            words = data.split() if opcode == 0x1 else []
            if words[:1] == [b"push"] and len(words) == 3:
                args = (int(words[1]), int(words[2]))
                threading.Thread(target=self.ws_push, args=args, daemon=True).start()
            elif words == [b"mute"] or words == [b"unmute"]:
                self.ws_muted = words == [b"mute"]
            elif opcode in (0x1, 0x2, 0x0):
                if not self.ws_muted:
                    self.ws_send(opcode if opcode else 0x1, data)
            elif opcode == 0x9:  # ping
                self.ws_send(0xA, data)
            elif opcode == 0x8:  # close
                self.ws_send(0x8, data[:2])
                return "close-frame"


def slow_ms(query):
    try:
        ms = int(parse_qs(query).get("ms", ["3000"])[0])
    except ValueError:
        ms = 3000
    return max(0, min(ms, 60000))


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def handle_error(self, request, client_address):
        # A client (the gateway) that went away while a slow answer was pending is expected,
        # and so is a refused TLS handshake (no client certificate, an unknown CA): one line,
        # not a traceback.
        err = sys.exc_info()[1]
        if isinstance(err, (ConnectionError, TimeoutError)):
            return
        with STDOUT_LOCK:
            sys.stderr.write(f"upstream: connection error: {err!r}\n")

def tls_context(cert, key, client_ca):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    ctx.set_alpn_protocols(["http/1.1"])
    if client_ca:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(client_ca)

    def remember_sni(sock, server_name, _ctx):
        sock.sg_sni = server_name

    ctx.sni_callback = remember_sni
    return ctx


def main():
    global JOURNAL_STDOUT
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--journal-stdout", action="store_true")
    parser.add_argument("--tls-cert")
    parser.add_argument("--tls-key")
    parser.add_argument("--tls-client-ca")
    args = parser.parse_args()
    JOURNAL_STDOUT = args.journal_stdout

    server = Server(("127.0.0.1", args.port), Handler)
    if args.tls_cert:
        ctx = tls_context(args.tls_cert, args.tls_key, args.tls_client_ca)
        # The handshake runs in the handler's thread, on its first read: a client that never
        # finishes one cannot stall the accept loop.
        server.socket = ctx.wrap_socket(
            server.socket, server_side=True, do_handshake_on_connect=False
        )
    host, port = server.server_address[:2]
    with STDOUT_LOCK:
        sys.stdout.write(f"upstream listening {host}:{port}\n")
        sys.stdout.flush()
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
