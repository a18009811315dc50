"""A real Prometheus 2 for tests/test_prometheus.py (python3 standard library only).

    p = servers_prometheus.shared()    # one per test run, started lazily, stopped at exit (atexit)
    p.url                              # http://127.0.0.1:PORT
    p.query('sum(rate(x[5m]))')        # the JSON answer of /api/v1/query, decoded

The server is /usr/bin/prometheus (Debian's prometheus package) in the foreground, listening on
127.0.0.1 and a free port, its TSDB in a temporary directory, scraping every second the /metrics of
the shared HTTP fixture (tests/servers_http.py), whose counters are all multiples of the number of
scrapes so far. shared() returns once Prometheus is ready and the 5-minute error rate of
http_requests_total has a value, i.e. two scrapes are stored: rate() needs two samples.
"""
import atexit
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

import servers_http
from run import free_port
from servers import ServerError, kill, wait_until

PROMETHEUS = "/usr/bin/prometheus"
ERROR_RATE = 'sum(rate(http_requests_total{status=~"5.."}[5m])) / sum(rate(http_requests_total[5m]))'

CONFIG = """global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: fixture
    static_configs:
      - targets: ["127.0.0.1:%d"]
"""


class PrometheusServer:
    def __init__(self, target_port, timeout=20):
        if not os.access(PROMETHEUS, os.X_OK):
            raise ServerError("%s is missing: install Debian's prometheus package "
                              "(apt-get install prometheus, or make deps)" % PROMETHEUS)
        self.base = tempfile.mkdtemp(prefix="prometheus-")
        self.log = os.path.join(self.base, "prometheus.log")
        self.port = free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        self.stopped = False
        config = os.path.join(self.base, "prometheus.yml")
        with open(config, "w") as f:
            f.write(CONFIG % target_port)
        argv = [PROMETHEUS, "--config.file=" + config, "--storage.tsdb.path=" + os.path.join(self.base, "data"),
                "--web.listen-address=127.0.0.1:%d" % self.port]
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                         cwd=self.base, start_new_session=True)
        self.pid = self.proc.pid
        try:
            deadline = time.monotonic() + timeout
            self.wait_until("Prometheus ready on port %d" % self.port, self._ready, deadline)
            self.wait_until("a value for the error rate (two scrapes of 127.0.0.1:%d)" % target_port,
                            lambda: self.query(ERROR_RATE)["data"]["result"], deadline)
        except BaseException:
            self.stop()
            raise

    def _ready(self):
        try:
            with urllib.request.urlopen(self.url + "/-/ready", timeout=1) as r:
                return r.status == 200
        except (OSError, urllib.error.URLError):
            return False    # not listening yet, or 503 while it starts

    def wait_until(self, what, fn, deadline):
        """Polls fn() until it returns something true, up to deadline (time.monotonic())."""
        return wait_until(what, fn, max(0.0, deadline - time.monotonic()), self.proc, self.log, 0.05)

    def query(self, promql):
        """The decoded answer of an instant query at the current time."""
        url = "%s/api/v1/query?%s" % (self.url, urllib.parse.urlencode({"query": promql}))
        with urllib.request.urlopen(url, timeout=5) as r:
            return json.loads(r.read())

    def stop(self):
        """Kills the server by PID (a test server keeps nothing) and removes its directory."""
        if self.stopped:
            return
        self.stopped = True
        kill(self.proc)
        shutil.rmtree(self.base, ignore_errors=True)


_shared = None


def shared():
    """The server shared by the tests of a run: started on first use, stopped at exit. Queries do
    not change its state, so tests cannot disturb one another through it."""
    global _shared
    if _shared is None or _shared.stopped or _shared.proc.poll() is not None:
        _shared = PrometheusServer(servers_http.shared().port)
        atexit.register(_shared.stop)
    return _shared
