"""OS and library errors a user can cause end every entry point with one line naming the path and
the fix, not a traceback (a traceback means a bug of this project)."""

from __future__ import annotations

import errno
import os
import subprocess
import sys

import pytest

from components.config import PROJECT_ROOT
from components.error_summary import os_error_line
from tests.conftest import tiny_overrides

pytestmark = pytest.mark.slow  # servers or subprocesses: make test, not make test-fast


def _run(args: list[str], tmp_path, uri: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}  # no other test's run
    env |= {"PYTHONPATH": str(PROJECT_ROOT), "MLFLOW_TRACKING_URI": uri}
    return subprocess.run([sys.executable, "-m", *args], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)


def _one_error_line(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    (line,) = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    return line


def test_a_cache_folder_that_is_a_file_ends_prepare_with_the_path_and_the_fix(tmp_path, corpus):
    blocker = tmp_path / "cache-is-a-file"
    blocker.write_text("")
    overrides = tiny_overrides(tmp_path, f"data.cache_dir={blocker}")
    done = _run(["pipelines.prepare", "--model", "conv_vae", "--data", str(corpus), "--overrides",
                 " ".join(overrides)], tmp_path, f"sqlite:///{tmp_path / 'mlflow.db'}")
    line = _one_error_line(done)
    assert str(blocker) in line and "a file stands where a folder is needed" in line


@pytest.mark.parametrize(("uri", "expected"), [
    ("sqlite:///{tmp}/a-file/mlflow.db", "a file stands where a folder is needed"),
    ("http://127.0.0.1:9", "cannot reach the MLflow tracking server http://127.0.0.1:9"),
])
def test_champions_reports_a_store_it_cannot_open_in_one_line(tmp_path, uri, expected):
    (tmp_path / "a-file").write_text("")
    line = _one_error_line(_run(["pipelines.champions"], tmp_path, uri.format(tmp=tmp_path)))
    assert expected in line


def test_no_space_and_permission_errors_name_the_path_and_what_to_do():
    full = os_error_line(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/cache/windows.f16"))
    assert full.startswith("/cache/windows.f16: No space left on device; free space there, or point "
                           "data.cache_dir")
    denied = os_error_line(PermissionError(errno.EACCES, os.strerror(errno.EACCES), "/ckpt/last.pt"))
    assert denied.startswith("/ckpt/last.pt: Permission denied; make it writable")
