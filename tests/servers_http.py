#!/usr/bin/env python3
"""The HTTP fixture for tests/test_http.py (python3 standard library only).

As a program (`python3 tests/servers_http.py DIR CERT_DAYS`) it serves, on 127.0.0.1 and ports the
kernel picks:
  http    plain HTTP/1.1 (ThreadingHTTPServer, a thread per connection, a deep accept queue so that
          200 concurrent requests are all served at once)
  https   the same endpoints over TLS, with a self-signed certificate generated in DIR by the
          `openssl` CLI (CN=localhost, SAN DNS:localhost and IP:127.0.0.1, valid CERT_DAYS days)
  silent  a raw TCP listener that accepts connections and never answers
and prints one JSON line {"http": port, "https": port, "silent": port} once all three listen. It
exits when its stdin reaches EOF (the test process died or closed it), so it never outlives the
harness.

Endpoints:
  GET  /health                 200, JSON {"status": "ok", ...}
  ANY  /status/NNN             status NNN, text body "status NNN"
  GET  /slow?ms=N              waits N ms, then 200
  GET  /drip?n=N               200 with Content-Length N, then one byte a second
  GET  /endless?chunk=N&every_ms=M   a chunked body that never ends (N bytes every M ms, 0 = flat out)
  GET  /redirect?n=N           302 to /redirect?n=N-1, until n=0 answers 200
  GET  /text                   text/plain "hello from the fixture"
  GET  /json/bad               Content-Type application/json, body that is not JSON
  GET  /big?bytes=N            N bytes of "x"
  GET  /headers                two X-Multi headers and a mixed-case X-Mixed-Case one
  ANY  /echo...                records method, path, headers, body; answers them as JSON
  GET  /_log?tag=T             the records whose path contains T (JSON array)
  GET  /metrics                Prometheus text exposition, a function of k = how many times it was
                               read (see metrics() below), for tests/test_prometheus.py

In a test module (`from servers_http import shared`), shared() starts one server per harness
process, lazily, and stops it at exit (atexit; by PID).
"""
import atexit
import json
import os
import socket
import socketserver
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CERT_DAYS = 42

# --------------------------------------------------------------------------------------- server

LOG = []
LOG_LOCK = threading.Lock()
SCRAPES = 0

# The latency histogram per scrape: cumulative counts (le, observations <= le). Its p95 is in the
# (0.1, 0.25] bucket at rank 95 of 100: 0.1 + 0.15 * (95 - 90) / (100 - 90) = 0.175 s.
BUCKETS = [("0.05", 50), ("0.1", 90), ("0.25", 100), ("0.5", 100), ("1", 100), ("+Inf", 100)]


def histogram(name, k):
    lines = ["# TYPE %s histogram" % name]
    lines += ['%s_bucket{le="%s"} %d' % (name, le, n * k) for le, n in BUCKETS]
    return lines + ["%s_sum %g" % (name, 6.0 * k), "%s_count %d" % (name, 100 * k)]


def metrics():
    """Every counter is a multiple of k (the scrape count), so that every rate() over any window is
    proportional to the same factor: ratios and quantiles come out exact whatever the timing.
      http_requests_total            90k with status 200, 10k with status 500: a 10% error rate
      http_request_duration_seconds  BUCKETS times k: p95 = 0.175 s
      clean_requests_total           100k, all status 200: no error at all
      idle_requests_total, idle_request_duration_seconds   constant: no traffic (rates 0, 0/0 = NaN)
    """
    global SCRAPES
    with LOG_LOCK:
        SCRAPES += 1
        k = SCRAPES
    lines = ["# TYPE http_requests_total counter",
             'http_requests_total{status="200"} %d' % (90 * k),
             'http_requests_total{status="500"} %d' % (10 * k),
             "# TYPE clean_requests_total counter",
             'clean_requests_total{status="200"} %d' % (100 * k),
             "# TYPE idle_requests_total counter",
             'idle_requests_total{status="200"} 90',
             'idle_requests_total{status="500"} 10']
    lines += histogram("http_request_duration_seconds", k) + histogram("idle_request_duration_seconds", 1)
    return "\n".join(lines) + "\n"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fixture/1"
    disable_nagle_algorithm = True   # headers and body are separate writes: no 40 ms delayed-ACK stall

    def log_message(self, fmt, *args):   # quiet
        pass

    def send_body(self, status, body, ctype="text/plain", extra=()):
        if isinstance(body, str):
            body = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def read_body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def handle_any(self):
        url = urllib.parse.urlsplit(self.path)
        q = dict(urllib.parse.parse_qsl(url.query))
        path = url.path
        try:
            if path.startswith("/echo"):
                body = self.read_body()
                rec = {"method": self.command, "path": self.path, "headers": dict(self.headers.items()),
                       "body": body.decode("utf-8", "replace"), "time": time.time()}
                with LOG_LOCK:
                    LOG.append(rec)
                return self.send_body(200, json.dumps(rec), "application/json")
            self.read_body()
            if path == "/health":
                return self.send_body(200, json.dumps({"status": "ok", "checks": {"db": "up", "n": 3}}),
                                      "application/json; charset=utf-8")
            if path.startswith("/status/"):
                code = int(path.split("/")[2])
                if code in (204, 304):
                    self.send_response(code)
                    self.end_headers()
                    return
                return self.send_body(code, "status %d" % code)
            if path == "/slow":
                time.sleep(int(q.get("ms", "100")) / 1000)
                return self.send_body(200, "slow %s" % q.get("ms", "100"))
            if path == "/drip":
                n = int(q.get("n", "100"))
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(n))
                self.end_headers()
                self.wfile.flush()
                for _ in range(n):
                    self.wfile.write(b".")
                    self.wfile.flush()
                    time.sleep(1)
                return
            if path == "/endless":
                chunk = b"y" * int(q.get("chunk", "65536"))
                every = int(q.get("every_ms", "0")) / 1000
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                frame = b"%x\r\n%s\r\n" % (len(chunk), chunk)
                while True:
                    self.wfile.write(frame)
                    self.wfile.flush()
                    if every:
                        time.sleep(every)
            if path == "/redirect":
                n = int(q.get("n", "1"))
                if n <= 0:
                    return self.send_body(200, "arrived")
                return self.send_body(302, "moved", extra=[("Location", "/redirect?n=%d" % (n - 1))])
            if path == "/text":
                return self.send_body(200, "hello from the fixture\n")
            if path == "/json/bad":
                return self.send_body(200, "{not json", "application/json")
            if path == "/big":
                return self.send_body(200, b"x" * int(q.get("bytes", "1000")))
            if path == "/headers":
                return self.send_body(200, "h", extra=[("X-Multi", "one"), ("X-Multi", "two"),
                                                       ("X-Mixed-Case", "Value")])
            if path == "/metrics":
                return self.send_body(200, metrics(), "text/plain; version=0.0.4; charset=utf-8")
            if path == "/_log":
                tag = q.get("tag", "")
                with LOG_LOCK:
                    recs = [r for r in LOG if tag in r["path"]]
                return self.send_body(200, json.dumps(recs), "application/json")
            return self.send_body(404, "no such endpoint")
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
            self.close_connection = True

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = handle_any


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024
    allow_reuse_address = True

    def handle_error(self, request, client_address):   # a client that hangs up is not news
        pass


class TLSServer(Server):
    context = None

    def finish_request(self, request, client_address):
        # The handshake runs in the connection's own thread, not in the accept loop.
        try:
            request.settimeout(30)
            conn = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return
        try:
            self.RequestHandlerClass(conn, client_address, self)
        finally:
            try:
                conn.close()
            except OSError:
                pass


def make_cert(d, days):
    key, cert = os.path.join(d, "key.pem"), os.path.join(d, "cert.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-days", str(days), "-nodes",
                    "-keyout", key, "-out", cert, "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return key, cert


def silent_listener():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(128)
    held = []

    def loop():
        while True:
            c, _ = s.accept()
            held.append(c)          # held open, never read, never answered
            del held[:-500]
    threading.Thread(target=loop, daemon=True).start()
    return s.getsockname()[1]


def serve(d, days):
    key, cert = make_cert(d, days)
    http = Server(("127.0.0.1", 0), Handler)
    https = TLSServer(("127.0.0.1", 0), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    https.context = ctx
    for srv in (http, https):
        threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    ports = {"http": http.server_address[1], "https": https.server_address[1], "silent": silent_listener(),
             "cert": cert}
    sys.stdout.write(json.dumps(ports) + "\n")
    sys.stdout.flush()
    sys.stdin.read()        # until the harness goes away
    os._exit(0)


# -------------------------------------------------------------------------------------- fixture

class HTTPFixture:
    def __init__(self, proc, ports, d):
        self.proc = proc
        self.dir = d
        self.port = ports["http"]
        self.tls_port = ports["https"]
        self.silent_port = ports["silent"]
        self.cert = ports["cert"]
        self.cert_days = CERT_DAYS
        self.url = "http://127.0.0.1:%d" % self.port
        self.tls_url = "https://127.0.0.1:%d" % self.tls_port

    def log(self, tag):
        """The /echo requests whose path contains tag."""
        with urllib.request.urlopen("%s/_log?tag=%s" % (self.url, urllib.parse.quote(tag)), timeout=10) as r:
            return json.loads(r.read())

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


_shared = None


def start(days=CERT_DAYS, timeout=30):
    d = tempfile.mkdtemp(prefix="rbhttp-")
    proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), d, str(days)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    import select
    deadline = time.monotonic() + timeout
    line = b""
    while not line.endswith(b"\n"):
        left = deadline - time.monotonic()
        r, _, _ = select.select([proc.stdout], [], [], max(0, left))
        if not r:
            proc.kill()
            raise RuntimeError("the HTTP fixture did not start within %ss" % timeout)
        b = os.read(proc.stdout.fileno(), 4096)
        if not b:
            raise RuntimeError("the HTTP fixture exited: %s" % proc.stderr.read().decode("utf-8", "replace"))
        line += b
    fx = HTTPFixture(proc, json.loads(line), d)

    def stop():
        fx.stop()
        import shutil
        shutil.rmtree(d, ignore_errors=True)
    atexit.register(stop)
    return fx


def shared():
    """The module-wide server, started on first use, stopped when the harness exits."""
    global _shared
    if _shared is None or _shared.proc.poll() is not None:
        _shared = start()
    return _shared


if __name__ == "__main__":
    serve(sys.argv[1], int(sys.argv[2]))
