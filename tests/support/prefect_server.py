"""A real local Prefect server (and workers, CLI calls) in subprocesses, for the deployment test and
the Prefect overhead bench.

    with PrefectServer(tmp_path / "prefect") as server:       # `prefect server start` on 127.0.0.1
        env = server.client_env(RAGLINE_HOME=str(REPO))              # PREFECT_API_URL etc. for every child
        prefect_cli(["work-pool", "create", "ragline", "--type", "process"], env=env)
        with Background(prefect_command("worker", "start", "--pool", "ragline"), env=env, log=...):
            ...

Everything stays on this machine: the server binds 127.0.0.1 on a free port, keeps its SQLite
database in a private PREFECT_HOME, and runs with analytics and the UI off. Every child gets
`local_only_env`: Prefect's and Hugging Face's telemetry off, and the proxy variables pointed at a
closed local port (127.0.0.1 and localhost exempt), so an HTTP call some library makes to the
internet fails at once on this machine instead of resolving and dialling out. (The one such call
seen: `prefect work-pool create` asks the server for the integrations registry, which the server
fetches from GitHub before falling back to its bundled copy.)

Each process starts in a session of its own and is stopped by its process group id: terminate,
then kill after a timeout; every wait is bounded.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Self

import httpx

from ragline.offline import OFFLINE_ENV

# Where HTTP(S) clients that honour the proxy variables (httpx, requests, urllib) are sent: the
# discard port on loopback, closed here, so any outbound call fails fast and never leaves the box.
DEAD_PROXY = "http://127.0.0.1:9"
LOCAL_HOSTS = "127.0.0.1,localhost,::1"


def local_only_env() -> dict[str, str]:
    env = dict(OFFLINE_ENV)
    env.update({
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",  # nothing here needs the dashboard; no browser will load it
        "PREFECT_CLI_PROMPT": "false",  # never wait on a prompt
        "DO_NOT_TRACK": "1",
    })
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        env[name] = env[name.lower()] = DEAD_PROXY
    env["NO_PROXY"] = env["no_proxy"] = LOCAL_HOSTS
    return env


def base_env(prefect_home: Path, api_url: str | None = None, **extra: str) -> dict[str, str]:
    """This process's environment without any PREFECT_* setting (a developer's profile or API URL must
    not leak in), plus the local-only variables, a private PREFECT_HOME and, if given, the API URL."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(local_only_env())
    env["PREFECT_HOME"] = str(prefect_home)
    if api_url:
        env["PREFECT_API_URL"] = api_url
    env.update(extra)
    return env


def prefect_command(*args: str) -> list[str]:
    """The `prefect` CLI of this interpreter's environment."""
    script = Path(sys.executable).with_name("prefect")
    return [str(script), *args] if script.exists() else [sys.executable, "-m", "prefect", *args]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(path: Path, chars: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


def prefect_cli(args: Sequence[str], env: Mapping[str, str], cwd: Path | None = None,
                timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run one `prefect ...` command to completion (bounded); raise with its output if it fails."""
    proc = subprocess.run(prefect_command(*args), check=False, env=dict(env), cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise RuntimeError(f"prefect {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


class Background:
    """A long-running child (server, worker) in its own session, output to a log file."""

    def __init__(self, command: Sequence[str], env: Mapping[str, str], log: Path, cwd: Path | None = None):
        self.command, self.env, self.log, self.cwd = list(command), dict(env), log, cwd
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None

    def start(self) -> Self:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = self.log.open("ab")
        self.proc = subprocess.Popen(self.command, env=self.env, cwd=self.cwd, stdout=self._log_file,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        return self

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM to the child's process group (it and the flow runs it spawned), SIGKILL after `timeout`."""
        proc = self.proc
        if proc is not None:
            for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10)):
                try:
                    os.killpg(proc.pid, sig)  # the group this Popen created: its id is the child's pid
                except ProcessLookupError:
                    break
                try:
                    proc.wait(timeout=wait)
                    # the leader is gone; make sure nothing it started lingers in its group
                    try:
                        os.killpg(proc.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                    break
                except subprocess.TimeoutExpired:
                    continue
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class PrefectServer(Background):
    """`prefect server start --host 127.0.0.1 --port <free>` with a private PREFECT_HOME (SQLite)."""

    def __init__(self, home: Path, port: int | None = None, scheduler: bool = False, **extra_env: str):
        self.home = Path(home)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/api"
        env = base_env(self.home / "home", **extra_env)
        # The scheduler would create the deployments' nightly runs: off unless asked, so that no
        # scheduled run with the deployment's defaults can ever reach a test's worker.
        env["PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED"] = "true" if scheduler else "false"
        super().__init__(prefect_command("server", "start", "--host", "127.0.0.1", "--port", str(self.port)),
                         env=env, log=self.home / "server.log", cwd=self.home)
        self.startup_seconds: float | None = None

    def client_env(self, **extra: str) -> dict[str, str]:
        """The environment for a client of this server (CLI, worker, flow process)."""
        return base_env(self.home / "client-home", api_url=self.url, **extra)

    def start(self, timeout: float = 150) -> Self:
        self.home.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        super().start()
        try:
            self.wait_healthy(timeout)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started
        return self

    def wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        with httpx.Client(trust_env=False, timeout=5) as client:
            while time.monotonic() < deadline:
                if not self.running():
                    raise RuntimeError(f"prefect server exited {self.proc.returncode}:\n{tail(self.log)}")
                try:
                    if client.get(f"{self.url}/health").status_code == 200:
                        return
                except httpx.HTTPError as exc:
                    last_error = exc
                time.sleep(0.25)
        raise TimeoutError(f"prefect server not healthy after {timeout} s ({last_error}):\n{tail(self.log)}")

    def api(self) -> httpx.Client:
        """A plain HTTP client for the server's REST API (no proxy, bounded timeouts)."""
        return httpx.Client(base_url=self.url + "/", trust_env=False, timeout=10)
