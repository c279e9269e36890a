"""A private PostgreSQL cluster, and a Prefect server on it, for the tests and scripts/scale.py.

- `postgres()`: initdb into a fresh temp dir, `postgres` in the foreground on a free 127.0.0.1
  port (its unix socket in the temp dir too), one database created; stopped with
  `pg_ctl stop -m fast` and its pid checked gone, then the temp dir removed. PostgreSQL refuses
  to run as root, so as root every PostgreSQL program runs as an unprivileged user (Debian's
  `postgres`, or `DRIFTLINE_POSTGRES_OS_USER`) through `setpriv`, the temp dir chowned to it.
- `prefect_server(cluster, ...)`: `prefect server start` with its database on that cluster
  (Prefect's documented `PREFECT_API_DATABASE_CONNECTION_URL=postgresql+asyncpg://...`), its
  HTTP access log on, ready when the context is entered.

Both start their processes through driftline/stack/launcher.py and stop them by pid.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import re
import secrets
import shutil
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from driftline.stack import launcher as procs

PREFECT = str(Path(sys.executable).parent / "prefect")
DEFAULT_OS_USER = "postgres"
SUPERUSER = "driftline"
# faster for throw-away clusters; scripts/scale.py keeps PostgreSQL's durable defaults
THROWAWAY_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


class PostgresError(RuntimeError):
    """PostgreSQL is missing, or the private cluster could not be started or stopped."""


def bindir() -> Path:
    """Where initdb, pg_ctl and postgres are: on PATH, else Debian's /usr/lib/postgresql/N/bin."""
    on_path = shutil.which("initdb")
    if on_path and shutil.which("pg_ctl"):
        return Path(on_path).resolve().parent  # the real bin dir: psql, createdb are there too
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(re.sub(r"\D", "", p.split("/")[4]) or 0),
    )
    for initdb in reversed(found):
        if (Path(initdb).parent / "pg_ctl").exists():
            return Path(initdb).parent
    raise PostgresError(
        "initdb and pg_ctl not found (on PATH or in /usr/lib/postgresql/*/bin); "
        "install PostgreSQL (Debian: apt-get install postgresql)"
    )


@dataclass(frozen=True)
class Cluster:
    """A running private cluster: where it listens and how to reach its database."""

    root: Path
    port: int
    database: str
    password: str
    process: procs.Process
    bindir: Path
    as_user: tuple[str, ...]

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def pid(self) -> int:
        return self.process.pid

    def url(self, driver: str = "postgresql+asyncpg") -> str:
        return f"{driver}://{SUPERUSER}:{self.password}@127.0.0.1:{self.port}/{self.database}"

    def psql(self, sql: str, *, timeout_seconds: float = 60) -> str:
        """Run one statement with psql over TCP; return its unaligned, tuples-only output."""
        done = procs.run(
            [str(self.bindir / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", SUPERUSER,
             "-d", self.database, "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql],
            env={**os.environ, "PGPASSWORD": self.password},
            timeout_seconds=timeout_seconds,
        )  # fmt: skip
        if done.returncode != 0:
            raise PostgresError(f"psql {sql!r} exited {done.returncode}: {done.stderr.strip()}")
        return done.stdout.strip()


def _unprivileged() -> tuple[tuple[str, ...], pwd.struct_passwd | None]:
    """The argv prefix that runs a PostgreSQL program as an unprivileged user, when root."""
    if os.geteuid() != 0:
        return (), None
    name = os.environ.get("DRIFTLINE_POSTGRES_OS_USER") or DEFAULT_OS_USER
    try:
        user = pwd.getpwnam(name)
    except KeyError:
        raise PostgresError(
            f"running as root, and PostgreSQL refuses root: no user {name!r} to run it as; "
            f"install Debian's postgresql package (it adds 'postgres') or set "
            f"DRIFTLINE_POSTGRES_OS_USER to an unprivileged user"
        ) from None
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        raise PostgresError("running as root needs setpriv (Debian: util-linux) to drop to " + name)
    # setpriv execs the program itself: the pid we hold is postgres' own
    prefix = (setpriv, f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--init-groups", "--")
    return prefix, user


def _chown_tree(root: Path, user: pwd.struct_passwd | None) -> None:
    if user is None:
        return
    for path in [root, *root.rglob("*")]:
        os.chown(path, user.pw_uid, user.pw_gid)


@contextlib.contextmanager
def postgres(
    database: str = "prefect",
    *,
    settings: Mapping[str, str] | None = None,
    preload: Sequence[str] = (),
    log: Path | None = None,
    keep_root: bool = False,
) -> Iterator[Cluster]:
    """A private PostgreSQL cluster on a free loopback port with `database` created; stopped
    (pg_ctl stop -m fast, its pid checked gone) and its temp dir removed at the end.

    `settings` are passed as `-c name=value` (default: durability off, for throw-away
    clusters); `preload` names shared_preload_libraries (e.g. pg_stat_statements).
    """
    pg = bindir()
    prefix, user = _unprivileged()
    # /tmp itself, not a test's tmp_path: the unprivileged user must be able to reach it
    root = Path(tempfile.mkdtemp(prefix="driftline-postgres-"))
    try:
        password = secrets.token_hex(16)
        (root / "pwfile").write_text(password + "\n")
        (root / "socket").mkdir()
        _chown_tree(root, user)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "HOME": str(root),
        }
        initdb = procs.run(
            [*prefix, str(pg / "initdb"), "-D", str(root / "data"), "-U", SUPERUSER,
             f"--pwfile={root / 'pwfile'}", "--auth=scram-sha-256", "--encoding=UTF8",
             "--locale=C", "--no-sync", "--no-instructions"],
            env=env, timeout_seconds=120,
        )  # fmt: skip
        if initdb.returncode != 0:
            raise PostgresError(f"initdb exited {initdb.returncode}: {initdb.stderr[-2000:]}")
        port = procs.free_port()
        options = {**(THROWAWAY_SETTINGS if settings is None else settings)}
        options["listen_addresses"] = "127.0.0.1"
        if preload:
            options["shared_preload_libraries"] = ",".join(preload)
        flags = [f"-c{name}={value}" for name, value in options.items()]
        argv = [*prefix, str(pg / "postgres"), "-D", str(root / "data"), "-p", str(port),
                "-k", str(root / "socket"), *flags]  # fmt: skip
        with procs.launched(argv, out=log or root / "postgres.log", env=env) as process:
            cluster = Cluster(root, port, database, password, process, pg, prefix)
            try:
                process.wait_listening(port, timeout_seconds=60)
                created = procs.run(
                    [str(pg / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", SUPERUSER,
                     database],
                    env={**env, "PGPASSWORD": password}, timeout_seconds=60,
                )  # fmt: skip
                if created.returncode != 0:
                    raise PostgresError(f"createdb {database}: {created.stderr.strip()}")
                yield cluster
            finally:
                _stop(cluster, env)
    finally:
        if not keep_root:
            shutil.rmtree(root, ignore_errors=True)


def _stop(cluster: Cluster, env: Mapping[str, str]) -> None:
    """pg_ctl stop -m fast, then the postmaster's pid must be gone (the launcher's SIGKILL to
    its group follows either way, when the `launched` block ends)."""
    if not cluster.process.running():
        return
    stopped = procs.run(
        [*cluster.as_user, str(cluster.bindir / "pg_ctl"), "stop", "-D", str(cluster.data),
         "-m", "fast", "-w", "-t", "60"],
        env=env, timeout_seconds=90,
    )  # fmt: skip
    procs.wait_for(
        lambda: not cluster.process.running(),
        timeout_seconds=30,
        what=f"postgres (pid {cluster.pid}) to exit after pg_ctl stop "
        f"(pg_ctl: {stopped.returncode} {stopped.stdout.strip()} {stopped.stderr.strip()})",
        interval=0.1,
    )


@dataclass(frozen=True)
class PrefectServer:
    """A Prefect server on the private cluster."""

    process: procs.Process
    port: int
    home: Path
    log: Path

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"


def prefect_server_env(cluster: Cluster, home: Path) -> dict[str, str]:
    """What `prefect server start` needs to keep its database on `cluster`."""
    return {
        "PREFECT_HOME": str(home),
        "PREFECT_API_DATABASE_CONNECTION_URL": cluster.url(),
        "DO_NOT_TRACK": "1",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }


@contextlib.contextmanager
def prefect_server(
    cluster: Cluster,
    home: Path,
    *,
    env: Mapping[str, str] | None = None,
    access_log: bool = True,
    timeout_seconds: float = 180,
) -> Iterator[PrefectServer]:
    """`prefect server start` on a free loopback port, its database on `cluster`; ready (its
    migrations applied) when entered, stopped by pid at the end. With `access_log` its log holds
    one uvicorn access line per HTTP request (how scripts/scale.py counts API calls)."""
    home.mkdir(parents=True, exist_ok=True)
    port = procs.free_port()
    server_env = {**os.environ, **(env or {}), **prefect_server_env(cluster, home)}
    if access_log:
        server_env["PREFECT_SERVER_LOGGING_LEVEL"] = "INFO"
    log = home / "prefect-server.log"
    argv = [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    with procs.launched(argv, out=log, env=server_env) as process:
        server = PrefectServer(process, port, home, log)
        process.wait_ready(f"{server.api_url}/health", timeout_seconds=timeout_seconds)
        yield server


def rss_bytes(pid: int) -> int:
    """Resident set size of one process (VmRSS), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise PostgresError(f"no VmRSS for pid {pid}")


def main() -> int:
    """`python -m driftline.stack.postgres`: start a cluster and a Prefect server on it, print
    where, stop both (a smoke check of this module)."""
    with postgres() as cluster, prefect_server(cluster, cluster.root / "prefect") as server:
        print(f"postgres pid {cluster.pid} on 127.0.0.1:{cluster.port}; prefect {server.api_url}")
        print(cluster.psql("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
