"""A throw-away PostgreSQL cluster on 127.0.0.1 for tests: initdb into a temp folder, pg_ctl start,
one password-protected role and its databases, everything removed on exit.

PostgreSQL refuses to run as root, so under root (CI containers) the cluster belongs to the
`postgres` user that Debian's package creates, and its commands run as that user.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.servers import HOST, free_port


@dataclass(frozen=True)
class Cluster:
    port: int
    user: str
    password: str

    def url(self, database: str, with_password: bool = False) -> str:
        """A SQLAlchemy URL. Without the password (the way to hand it out): libpq reads it from
        PGPASSWORD or ~/.pgpass."""
        secret = f":{self.password}" if with_password else ""
        return f"postgresql://{self.user}{secret}@{HOST}:{self.port}/{database}"


def binaries() -> Path | None:
    """The folder of initdb / pg_ctl: on PATH, or Debian's versioned folder (not on PATH)."""
    if found := shutil.which("initdb"):
        return Path(os.path.realpath(found)).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(versions[-1]).parent if versions else None


def _as_owner() -> dict:
    """subprocess keyword arguments that run a command as the cluster's owner."""
    if os.geteuid() != 0:
        return {}
    owner = pwd.getpwnam("postgres")  # KeyError: the package that creates it is not installed
    return {"user": owner.pw_uid, "group": owner.pw_gid, "env": os.environ | {"HOME": owner.pw_dir}}


@contextmanager
def cluster(databases: tuple[str, ...], user: str = "tuner",
            password: str = "s3cret-pw") -> Iterator[Cluster]:
    """Start a cluster with `user` (password auth over TCP) owning `databases`; stop and delete it
    on exit however the block ends."""
    bin_dir = binaries()
    if bin_dir is None:
        raise FileNotFoundError("PostgreSQL is not installed (Debian: apt-get install -y postgresql)")
    owner = _as_owner()
    # Not under pytest's tmp_path: its parents are root-only (0700), and the owner must reach it.
    root = Path(tempfile.mkdtemp(prefix="pg-cluster-"))
    if owner:
        os.chown(root, owner["user"], owner["group"])
    data, port = root / "data", free_port()
    superuser_pw = root / "superuser.pw"
    superuser_pw.write_text("superuser-" + password)
    if owner:
        os.chown(superuser_pw, owner["user"], owner["group"])

    def run(*argv: str | Path) -> None:
        done = subprocess.run([str(a) for a in argv], capture_output=True, text=True, **owner)
        if done.returncode != 0:
            name = Path(argv[0]).name
            raise RuntimeError(f"{name} failed ({done.returncode}):\n{done.stdout}{done.stderr}")

    try:
        run(bin_dir / "initdb", "-D", data, "-U", "postgres", "--pwfile", superuser_pw,
            "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8")
        # Only TCP on 127.0.0.1; the Unix socket in our own folder (no /var/run/postgresql needed).
        run(bin_dir / "pg_ctl", "-D", data, "-l", root / "server.log", "-w", "-t", "60", "start",
            "-o", f"-h {HOST} -p {port} -k {root}")
        try:
            sql = [f"CREATE ROLE {user} LOGIN PASSWORD '{password}'"]
            sql += [f"CREATE DATABASE {name} OWNER {user}" for name in databases]
            for statement in sql:
                run(bin_dir / "psql", "-h", root, "-p", str(port), "-U", "postgres", "-d", "postgres",
                    "-v", "ON_ERROR_STOP=1", "-c", statement)
            yield Cluster(port, user, password)
        finally:
            run(bin_dir / "pg_ctl", "-D", data, "-m", "immediate", "-w", "stop")
    finally:
        shutil.rmtree(root, ignore_errors=True)
