"""Shared helpers for the deploy checks: run the real binary on a free port, fail clearly."""
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request


def fail(msg):
    print(f"FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def wait_for(cond, what, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.05)
    fail(f"timed out after {timeout:.0f}s waiting for {what}")


def known_variables(binary):
    """Every variable name the server knows, from `--help` lines like '  PORT (default -): ...'."""
    out = subprocess.run([binary, "--help"], capture_output=True, text=True, timeout=10).stdout
    names = set(re.findall(r"^\s+([A-Z][A-Z0-9_]+) \(default ", out, re.M))
    if len(names) < 20:
        fail(f"`{binary} --help` listed only {sorted(names)}: format changed?")
    return names


class Server:
    """signal-server on the embedded bus with WS_PORT=0; the port comes from its JSON log."""

    def __init__(self, binary):
        self.dir = tempfile.TemporaryDirectory()  # empty cwd: no stray .env is read
        self.log = open(os.path.join(self.dir.name, "server.log"), "w+")
        env = {k: v for k, v in os.environ.items() if k not in known_variables(binary)}
        env.update(WS_PORT="0", LOG_LEVEL="info", PRETTY_LOGS="false")
        self.proc = subprocess.Popen([binary], cwd=self.dir.name, env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        self.port = int(wait_for(self._port, "the server's \"port\" log line"))

    def _port(self):
        if self.proc.poll() is not None:
            fail(f"server exited with {self.proc.returncode}: {self._text()}")
        m = re.search(r'"port":(\d+)', self._text())
        return m and m.group(1)

    def _text(self):
        with open(self.log.name) as f:
            return f.read()

    def get(self, path):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
            return r.status, r.read().decode()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        self.dir.cleanup()
        return self.proc.returncode

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
