"""Shared fixtures of utils-db's own tests (real PostgreSQL only)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from utils.core.testing import find_free_port
from utils.db import Database
from utils.db.testing import unique_name

PG_BIN = Path(os.environ.get("UTILS_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))


@pytest.fixture
def db(utils_postgres_url: str) -> Iterator[Database]:
    with Database(utils_postgres_url, max_size=4, timeout=5, retry_backoff=0.005) as database:
        yield database


@pytest.fixture
def table(db: Database) -> Iterator[str]:
    """A fresh table ``(id serial primary key, name text unique, n int)``, dropped after."""
    name = unique_name("t")
    db.execute(f"create table {name} (id serial primary key, name text unique, n int)")
    yield name
    db.execute(f"drop table if exists {name}")


class PrivatePostgres:
    """A throwaway PostgreSQL cluster on a free port, run as the ``postgres`` OS user."""

    def __init__(self) -> None:
        self.port = find_free_port()
        self.root = Path(tempfile.mkdtemp(prefix="utils-db-pg-"))
        self.data = self.root / "data"
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        shutil.chown(self.root, "postgres", "postgres")

    def _run(self, *args: str) -> None:
        command = [str(PG_BIN / args[0]), *args[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=60)

    def init(self) -> None:
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-o",
            options,
            "-w",
            "-l",
            str(self.root / "log"),
            "start",
        )

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def close(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="module")
def private_pg() -> Iterator[PrivatePostgres]:
    if not (PG_BIN / "initdb").exists():
        pytest.skip(f"no PostgreSQL server binaries in {PG_BIN} (set UTILS_TEST_PG_BIN)")
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        pytest.skip("initdb refuses root and runuser is missing")
    server = PrivatePostgres()
    try:
        server.init()
        server.start()
    except (subprocess.CalledProcessError, LookupError, PermissionError) as exc:
        server.close()
        pytest.skip(f"could not start a private PostgreSQL: {exc}")
    try:
        yield server
    finally:
        server.close()


def elapsed(started: float) -> float:
    return time.monotonic() - started
