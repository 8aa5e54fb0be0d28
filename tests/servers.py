"""Run optuna-dashboard and the MLflow server as local subprocesses and render their pages in
headless Chromium: shared by tests/test_dashboards.py and benchmarks/dashboard_screenshots.py."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# The venv's console scripts sit beside its interpreter, whether or not .venv/bin is on PATH.
BIN = Path(sys.executable).parent
HOST = "127.0.0.1"
# Chromium runs timers and fetches in virtual time and dumps the page once this much virtual time
# has passed with no request pending: enough for both SPAs to fetch their data and draw charts.
RENDER_BUDGET_MS = 15_000
# The servers are local: an http_proxy in the environment must not route requests to them.
_LOCAL = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port() -> int:
    """A port the OS says is free now (another process could take it before the server binds it;
    the server then exits and wait_ready fails with its log)."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def http_json(url: str, body: dict[str, Any] | None = None, timeout: float = 30) -> Any:
    """GET (or POST a JSON body to) url and decode its JSON answer."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with _LOCAL.open(request, timeout=timeout) as response:
        return json.load(response)


@dataclass
class Server:
    """A local server to run as a subprocess: its command, base URL and readiness URL."""
    name: str
    argv: list[str]
    url: str
    ready_url: str
    workdir: Path  # its working folder and log: whatever it writes stays out of the caller's
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen | None = None

    @property
    def log(self) -> Path:
        return self.workdir / f"{self.name}.log"

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else "(no log)"

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        # No telemetry calls from a machine that may be offline.
        env = os.environ | {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"} | self.env
        with open(self.log, "wb") as out:
            # Own session = own process group, so stop() reaches the server's children (uvicorn
            # under `mlflow server`) and nothing else.
            self.process = subprocess.Popen(self.argv, cwd=self.workdir, stdout=out,
                                            stderr=subprocess.STDOUT, env=env, start_new_session=True)

    def wait_ready(self, deadline: float) -> None:
        """Until ready_url answers 200; a server that exits or misses the deadline (a monotonic
        time) fails with the tail of its log."""
        assert self.process is not None, "start() first"
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                with _LOCAL.open(self.ready_url, timeout=5) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass  # not listening yet
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} did not answer {self.ready_url} in time:\n{self.log_tail()}")
            time.sleep(0.5)

    def terminate(self) -> None:
        if self.process is not None and self.process.poll() is None:
            with suppress(ProcessLookupError):  # exited since poll()
                os.killpg(self.process.pid, signal.SIGTERM)

    def wait_stopped(self, grace: float = 15) -> None:
        """After terminate(): wait, then SIGKILL the group of a server that ignores SIGTERM."""
        if self.process is None:
            return
        try:
            self.process.wait(grace)
        except subprocess.TimeoutExpired:
            with suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(grace)


@contextmanager
def running(*servers: Server) -> Iterator[None]:
    """Start all servers at once and stop them all on exit, however the block ends. They are not
    ready yet: their start-up imports overlap whatever the block does before wait_ready()."""
    try:
        for server in servers:
            server.start()
        yield
    finally:
        for server in servers:
            server.terminate()
        for server in servers:
            server.wait_stopped()


def wait_ready(*servers: Server, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    for server in servers:
        server.wait_ready(deadline)


@contextmanager
def serving(*servers: Server, timeout: float = 120) -> Iterator[tuple[str, ...]]:
    """Run the servers; yields their base URLs once all answer."""
    with running(*servers):
        wait_ready(*servers, timeout=timeout)
        yield tuple(server.url for server in servers)


def optuna_dashboard(storage: str, workdir: Path, port: int | None = None) -> Server:
    """optuna-dashboard on the study storage."""
    port = port or free_port()
    url = f"http://{HOST}:{port}"
    argv = [str(BIN / "optuna-dashboard"), storage, "--host", HOST, "--port", str(port)]
    return Server("optuna-dashboard", argv, url, f"{url}/api/meta", workdir)


def mlflow_server(backend_store_uri: str, workdir: Path, port: int | None = None) -> Server:
    """The MLflow tracking server (REST API + UI) on a tracking store. One uvicorn worker, and no
    job runner: by default 3.17 also starts 7 huey consumer processes for GenAI jobs, which
    tripled the start-up time on 2 cores and serve nothing a run comparison needs."""
    port = port or free_port()
    url = f"http://{HOST}:{port}"
    argv = [str(BIN / "mlflow"), "server", "--backend-store-uri", backend_store_uri, "--host", HOST,
            "--port", str(port), "--workers", "1",
            "--artifacts-destination", str(workdir / "mlartifacts")]
    return Server("mlflow-server", argv, url, f"{url}/health", workdir,
                  env={"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})


def compare_runs_url(mlflow_url: str, run_ids: list[str], experiment_ids: list[str]) -> str:
    """The MLflow UI's run-comparison page, in the format its own "Compare" button builds
    (Routes.getCompareRunPageRoute in the 3.17 bundle: JSON lists in the hash route's query)."""
    runs = json.dumps(sorted(run_ids), separators=(",", ":"))
    experiments = json.dumps(sorted(experiment_ids), separators=(",", ":"))
    return f"{mlflow_url}/#/compare-runs?runs={runs}&experiments={experiments}"


def served_study(optuna_url: str, name: str) -> tuple[int, dict[str, Any]]:
    """A study as optuna-dashboard's own frontend fetches it: (its id in the storage, its detail:
    trials with params, values, intermediate values, user attributes and notes)."""
    summaries = http_json(f"{optuna_url}/api/studies")["study_summaries"]
    ids = [s["study_id"] for s in summaries if s["study_name"] == name]
    if len(ids) != 1:
        raise LookupError(f"optuna-dashboard lists {len(ids)} studies named {name!r}: {summaries}")
    return ids[0], http_json(f"{optuna_url}/api/studies/{ids[0]}")


def study_page_url(dashboard_url: str, study_id: int) -> str:
    return f"{dashboard_url}/dashboard/studies/{study_id}"


def chromium_binary() -> str | None:
    """Debian's package installs `chromium`; other systems name it differently."""
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if found := shutil.which(name):
            return found
    return None


def chromium(url: str, *flags: str, budget_ms: int = RENDER_BUDGET_MS, timeout: float = 180) -> str:
    """Run headless Chromium on url with flags (--dump-dom, --screenshot=...); returns stdout.
    A throwaway profile per call, so parallel calls never share (and lock) one."""
    binary = chromium_binary()
    if binary is None:
        raise FileNotFoundError("chromium is not installed (Debian: apt-get install -y chromium)")
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        # --no-sandbox: root in a container has no user namespaces for the sandbox.
        argv = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                f"--user-data-dir={profile}", "--no-first-run", "--disable-extensions", "--no-proxy-server",
                f"--virtual-time-budget={budget_ms}", *flags, url]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"chromium failed on {url} ({done.returncode}):\n{done.stderr[-3000:]}")
    return done.stdout


def rendered_dom(url: str, budget_ms: int = RENDER_BUDGET_MS) -> str:
    """The page's DOM after its scripts ran (what a user sees, as HTML)."""
    return chromium(url, "--dump-dom", budget_ms=budget_ms)


def screenshot(url: str, path: Path, width: int = 1400, height: int = 900,
               budget_ms: int = RENDER_BUDGET_MS) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    chromium(url, f"--screenshot={path}", f"--window-size={width},{height}", budget_ms=budget_ms)
    if not path.exists() or path.stat().st_size == 0:
        raise RuntimeError(f"chromium wrote no screenshot of {url} to {path}")
    return path
