"""Helpers for tests/test_faults.py: fakes that misbehave on cue, subprocess control, a throwaway PostgreSQL.

- `HoldingFeishu`: the fake Feishu server (uuid = at most one message per hour, like Feishu) that, once it has
  delivered `hold_at` messages, keeps every further answer back until `release()` — so a worker killed then has
  sends the platform accepted but the worker never recorded (the at-least-once window, made certain).
- `HoldingWeCom`: the same for the fake WeCom server, which (like WeCom) has no idempotency key: every accepted
  call is a message, so a send repeated after a kill reaches the member twice. It records who the held calls were for.
- `FlakyWeCom`: the fake WeCom server plus HTTP-level faults: `http_error(path, status)`, `hang(path, seconds)`
  (answers late and delivers nothing, like a request lost on the way) and `always_500` (userids whose sends
  always fail with HTTP 500).
- `worker_cmd()` / `start_worker()`: the real delivery worker (`flask --app app worker run`) as a subprocess,
  through `tests/faults_worker.py`, which only shortens the outbox lease and lifts the Feishu app-wide quota.
- `PrivateCluster`: initdb + pg_ctl of a throwaway PostgreSQL in a temporary folder owned by `postgres`.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from werkzeug.wrappers import Request, Response

from tests.fake_feishu import FakeFeishu
from tests.fake_wecom import FakeWeCom

ROOT = Path(__file__).resolve().parent.parent


def wait_for(predicate, timeout: float, what: str, interval: float = 0.05):
    """Poll `predicate` until it returns something truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- fakes ---------------------------------------------------------------------------------------------------
class HoldingFeishu(FakeFeishu):
    def __init__(self, hold_at: int | None = None):
        super().__init__()
        self.hold_at = hold_at
        self.holding = threading.Event()  # set once an answer is being kept back
        self._release = threading.Event()

    def release(self) -> None:
        self._release.set()

    def duplicate_uuids(self) -> int:
        """Send calls whose uuid had already been delivered (answered without a second message)."""
        seen, dups = set(), 0
        for c in list(self.calls):
            uid = (c["json"] or {}).get("uuid") if c["path"].startswith("/open-apis/im/") else None
            if uid is None:
                continue
            if uid in seen:
                dups += 1
            seen.add(uid)
        return dups

    def _app(self, environ, start_response):
        answer = super()._app(environ, start_response)
        if self.hold_at is not None and len(self.delivered) >= self.hold_at and not self._release.is_set():
            self.holding.set()
            self._release.wait(30)
        return answer


class HoldingWeCom(FakeWeCom):
    SEND = "/cgi-bin/message/send"

    def __init__(self, hold_at: int | None = None):
        super().__init__()
        self.hold_at = hold_at
        self.holding = threading.Event()
        self.held: list[str] = []  # touser of every call answered late (accepted, then the answer kept back)
        self._release = threading.Event()

    def release(self) -> None:
        self._release.set()

    def delivered(self) -> list[str]:
        """The recipient of every message/send call WeCom accepted (a repeated call is a second message)."""
        return [str(body["touser"]) for body in self.sent(self.SEND)]

    def _wsgi(self, environ, start_response):
        req = Request(environ)
        body = req.get_data()
        environ["wsgi.input"] = io.BytesIO(body)  # the fake reads the body again
        environ["CONTENT_LENGTH"] = str(len(body))
        answer = super()._wsgi(environ, start_response)
        if (self.hold_at is not None and req.path == self.SEND and not self._release.is_set()
                and len(self.sent(self.SEND)) >= self.hold_at):  # fmt: skip
            with self._lock:
                self.held.append(str(json.loads(body)["touser"]))
            self.holding.set()
            self._release.wait(30)
        return answer


class FlakyWeCom(FakeWeCom):
    def __init__(self):
        super().__init__()
        self.http_faults: dict[str, list[tuple[str, float]]] = {}
        self.always_500: set[str] = set()

    def http_error(self, path: str, status: int = 502) -> None:
        self.http_faults.setdefault(path, []).append(("status", status))

    def hang(self, path: str, seconds: float) -> None:
        self.http_faults.setdefault(path, []).append(("hang", seconds))

    def _wsgi(self, environ, start_response):
        req = Request(environ)
        path = req.path
        with self._lock:
            fault = self.http_faults[path].pop(0) if self.http_faults.get(path) else None
        if fault is None and self.always_500 and path == "/cgi-bin/message/send":
            body = req.get_data()
            environ["wsgi.input"] = io.BytesIO(body)  # the fake reads the body again
            environ["CONTENT_LENGTH"] = str(len(body))
            users = set(str((json.loads(body or b"{}") or {}).get("touser", "")).split("|"))
            if users & self.always_500:
                fault = ("status", 500)
        if fault is not None:
            kind, value = fault
            with self._lock:
                self.calls.append({"path": path, "args": dict(req.args), "json": None, "ok": False})
            if kind == "hang":
                time.sleep(value)
                value = 504
            return Response("<html>upstream error</html>", status=int(value))(environ, start_response)
        return super()._wsgi(environ, start_response)


# --- processes -----------------------------------------------------------------------------------------------
def subprocess_env(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WECOM_", "FEISHU_", "DATABASE_URL"))}
    env.update(APP_ENV="test", SECRET_KEY="test-secret", LOG_LEVEL="WARNING", PYTHONUNBUFFERED="1")
    env.update(settings)
    return env


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen:
    """`flask --app app worker run` in its own process (stdout/stderr to `log`)."""
    out = open(log, "ab")  # noqa: SIM115 - closed by the child's exit; the test keeps the file
    return subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "faults_worker.py"), "--interval", "0.05"],
        cwd=ROOT,
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
    )


def flask_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "flask", "--app", "app", *args]


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 10) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)


# --- a throwaway PostgreSQL ----------------------------------------------------------------------------------
def pg_bindir() -> Path | None:
    for d in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (d / "initdb").exists() and (d / "pg_ctl").exists():
            return d
    found = shutil.which("initdb")
    return Path(found).parent if found and shutil.which("pg_ctl") else None


def private_cluster_unavailable() -> str | None:
    """Why a private cluster cannot be made here (None when it can)."""
    if pg_bindir() is None:
        return "PostgreSQL server binaries (initdb, pg_ctl) are not installed"
    try:
        import pwd

        pwd.getpwnam("postgres")
    except KeyError:
        return "there is no 'postgres' system user to own a private cluster"
    if os.geteuid() != 0 and pwd.getpwnam("postgres").pw_uid != os.geteuid():
        return "starting a private cluster needs root (runuser -u postgres) or running as postgres"
    if shutil.which("runuser") is None and os.geteuid() == 0:
        return "runuser is missing"
    return None


class PrivateCluster:
    """A PostgreSQL server of the test's own, on a free loopback port; `stop()` / `start()` simulate a restart."""

    def __init__(self):
        import pwd

        self.bindir = pg_bindir()
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="ub-pg-"))
        pw = pwd.getpwnam("postgres")
        os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        self.data = self.dir / "data"
        self._as_postgres(["initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync"])

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _as_postgres(self, args: list[str]) -> None:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise RuntimeError(f"{args[0]} failed: {done.stderr.strip()[-400:]}")

    def start(self) -> None:
        opts = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._as_postgres(["pg_ctl", "-D", str(self.data), "-o", opts, "-w", "-t", "30", "-l",
                           str(self.dir / "server.log"), "start"])  # fmt: skip

    def stop(self) -> None:
        self._as_postgres(["pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "30", "stop"])

    def destroy(self) -> None:
        with contextlib.suppress(Exception):
            self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
