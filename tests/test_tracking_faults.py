"""The tracking server as a fault: unreachable when a run starts, or gone in the middle of one.
Real `mlflow server` processes on 127.0.0.1; the pipelines run as separate processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest

from components.config import PROJECT_ROOT
from tests import servers
from tests.conftest import tiny_overrides, tune_args

pytestmark = pytest.mark.slow  # servers or subprocesses: make test, not make test-fast


def _pipeline(module: str, args: list[str], folder: Path, tracking_uri: str,
              as_flag: bool = False) -> subprocess.Popen:
    """The pipeline as a process, told the tracking URI by MLFLOW_TRACKING_URI or --tracking-uri."""
    env = os.environ | {"PYTHONPATH": str(PROJECT_ROOT),
                        # What a user would set to give up sooner than MLflow's 7 retries.
                        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}
    for var in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_TRACKING_URI"):
        env.pop(var, None)
    if as_flag:
        args = [*args, "--tracking-uri", tracking_uri]
    else:
        env["MLFLOW_TRACKING_URI"] = tracking_uri
    return subprocess.Popen([sys.executable, "-m", module, *args], cwd=folder, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _train_args(tmp_path: Path, corpus: Path, *extra: str) -> list[str]:
    overrides = tiny_overrides(tmp_path, "model.hidden_dims=[8,16]", *extra)
    return ["--model", "conv_vae", "--data", str(corpus), "--overrides", " ".join(overrides)]


@pytest.mark.parametrize("module", ["pipelines.train", "pipelines.tune"])
def test_an_unreachable_tracking_server_is_a_clear_error_and_leaves_nothing_behind(tmp_path, corpus, module):
    folder = tmp_path / "work"
    folder.mkdir()
    uri = f"http://{servers.HOST}:{servers.free_port()}"  # nothing listens there
    args = (_train_args(tmp_path, corpus) if module == "pipelines.train"
            else tune_args(tmp_path, corpus, "basic_vae", "tune.n_trials=1"))
    started = time.monotonic()
    proc = _pipeline(module, args, folder, uri, as_flag=module == "pipelines.tune")
    output, _ = proc.communicate(timeout=120)
    elapsed = time.monotonic() - started
    assert proc.returncode == 1, output
    last = output.strip().splitlines()[-1]
    assert last.startswith("error: cannot reach the MLflow tracking server " + uri), output
    assert "MLFLOW_TRACKING_URI" in last
    # One attempt, no retries with back-off: the generous bound only rules out minutes of retrying.
    assert elapsed < 60, f"took {elapsed:.0f} s to give up"
    # Nothing prepared, no checkpoint, no study, no local tracking store.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["work"]
    assert not any(folder.iterdir())


def test_a_tracking_server_that_goes_away_fails_the_run_and_the_checkpoint_resumes(tmp_path, corpus):
    store = f"sqlite:///{tmp_path / 'server.db'}"
    port = servers.free_port()
    args = _train_args(tmp_path, corpus, "train.epochs=6", "train.early_stopping_patience=6")
    checkpoints = tmp_path / "checkpoints"
    server = servers.mlflow_server(store, tmp_path / "server", port=port)
    with servers.serving(server, timeout=180) as (uri,):
        proc = _pipeline("pipelines.train", args, tmp_path, uri)
        deadline = time.monotonic() + 240
        while not list(checkpoints.glob("*/last.pt")) and proc.poll() is None:
            assert time.monotonic() < deadline, "no checkpoint in time"
            time.sleep(0.2)
    # The server is stopped here, after the first epoch's checkpoint.
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 1, output
    (last,) = checkpoints.glob("*/last.pt")
    run_id = last.parent.name
    message = output.strip().splitlines()[-1]
    assert message.startswith(f"error: the MLflow tracking store {uri} stopped answering during run {run_id}")
    assert f"--resume {run_id}" in message

    # The same server (same store) back on the same port: the run resumes and finishes.
    with servers.serving(servers.mlflow_server(store, tmp_path / "server", port=port), timeout=180):
        resumed = _pipeline("pipelines.train", [*args, "--resume", run_id], tmp_path, uri)
        output, _ = resumed.communicate(timeout=300)
        assert resumed.returncode == 0, output
        client = mlflow.MlflowClient(uri)
        run = client.get_run(run_id)
        assert run.info.status == "FINISHED"
        steps = sorted(m.step for m in client.get_metric_history(run_id, "train/loss"))
        assert steps == list(range(6)), "every epoch logged exactly once across the outage"
