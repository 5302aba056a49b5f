"""A throwaway PostgreSQL server for tests: Debian's binaries, a temporary data folder, a
password-protected role, listening on 127.0.0.1 only, stopped by its process id."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

USER, PASSWORD = "clickscore", "s3cret-for-tests"


def binaries() -> Path:
    """Debian's `postgresql` package keeps them in /usr/lib/postgresql/<major>/bin."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    if not found:
        raise RuntimeError("PostgreSQL is not installed (make test installs Debian's "
                           "postgresql package)")
    return found[-1].parent


@dataclass
class Server:
    folder: Path
    port: int
    pid: int

    @property
    def url(self) -> str:
        return f"jdbc:postgresql://127.0.0.1:{self.port}/postgres"

    def stop(self) -> None:
        os.kill(self.pid, signal.SIGINT)  # PostgreSQL's fast shutdown
        for _ in range(100):
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        shutil.rmtree(self.folder, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(folder: Path) -> Server:
    """initdb + start; as root, the server runs as the `postgres` user (it refuses root)."""
    bin_dir = binaries()
    as_user: list[str] = []
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    data, password_file, log = folder / "data", folder / "password", folder / "server.log"
    password_file.write_text(PASSWORD + "\n")
    if as_user:
        shutil.chown(password_file, "postgres", "postgres")
    subprocess.run([*as_user, str(bin_dir / "initdb"), "-D", str(data), "-U", USER,
                    "--pwfile", str(password_file), "--auth", "scram-sha-256", "-E", "UTF8"],
                   check=True, capture_output=True, cwd=folder)
    port = _free_port()
    subprocess.run([*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w",
                    "-o", f"-c listen_addresses=127.0.0.1 -p {port} -k {folder}", "start"],
                   check=True, capture_output=True)
    pid = int((data / "postmaster.pid").read_text().split()[0])
    return Server(folder, port, pid)


def create_database(server: Server, name: str) -> str:
    """A new database on `server`; its JDBC URL."""
    subprocess.run([str(binaries() / "createdb"), "-h", "127.0.0.1", "-p", str(server.port),
                    "-U", USER, name], check=True, capture_output=True,
                   env={**os.environ, "PGPASSWORD": PASSWORD})
    return f"jdbc:postgresql://127.0.0.1:{server.port}/{name}"


def psql(server: Server, database: str, sql: str) -> str:
    """Run `sql` on one database of `server` with psql (stops at the first error); its
    unaligned, tuples-only output."""
    done = subprocess.run([str(binaries() / "psql"), "-h", "127.0.0.1", "-p", str(server.port),
                           "-U", USER, "-d", database, "-v", "ON_ERROR_STOP=1", "-A", "-t",
                           "-c", sql], check=True, capture_output=True, text=True,
                          env={**os.environ, "PGPASSWORD": PASSWORD})
    return done.stdout


@contextmanager
def holding_lock(server: Server, database: str, table: str) -> Iterator[None]:
    """Another session holds `table` locked (ACCESS EXCLUSIVE, in an open transaction) for
    the block's duration: every statement touching it waits."""
    holder = subprocess.Popen(
        [str(binaries() / "psql"), "-h", "127.0.0.1", "-p", str(server.port), "-U", USER,
         "-d", database, "-c", f"BEGIN; LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE; "
         "SELECT pg_sleep(600)"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "PGPASSWORD": PASSWORD, "PGAPPNAME": "clickscore-lock-holder"})
    try:
        for _ in range(300):
            if psql(server, database, f"""SELECT count(*) FROM pg_locks l JOIN pg_class c
                ON c.oid = l.relation WHERE c.relname = '{table}' AND l.granted
                AND l.mode = 'AccessExclusiveLock'""").strip() == "1":
                break
            time.sleep(0.1)
        else:
            raise RuntimeError(f"the lock on {table} was not taken")
        yield
    finally:  # its server session too: a killed client's sleep would hold the lock on
        psql(server, database, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
             "WHERE application_name = 'clickscore-lock-holder'")
        holder.kill()
        holder.wait()
