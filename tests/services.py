"""Private, throw-away instances of the real services the tests talk to.

Each service runs Debian's binary on free loopback ports (never a standard port: a machine may
already run its own Mosquitto on 1883), with every file under its own temp dir, and logs to a
file in that dir whose tail is shown when it fails. ``restart()`` keeps the port and the data
dir, so a test can take a database or broker away and bring the *same* one back.

    with Mosquitto() as broker:
        client.connect("127.0.0.1", broker.port)

CI installs the binaries; a missing one fails (never skips) with the apt-get line to run.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Self

INSTALL_HINT = "install it: apt-get install -y mosquitto influxdb victoria-metrics"
READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0


class ServiceError(RuntimeError):
    """A test service could not be started, or died; the message carries its log tail."""


def free_port() -> int:
    """A loopback TCP port nobody listens on right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def find_binary(*candidates: str, hint: str = INSTALL_HINT) -> str:
    for candidate in candidates:
        found = shutil.which(candidate) or (candidate if os.access(candidate, os.X_OK) else None)
        if found:
            return found
    raise ServiceError(f"{candidates[0]} not found; {hint}")


def _http_status(url: str, timeout: float = 1.0) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except (OSError, ValueError):
        return None


class Service:
    """One private server process: ports and data dir are chosen once and kept over restarts."""

    name = "service"
    binaries: tuple[str, ...] = ()
    port_names: tuple[str, ...] = ("port",)
    stop_signal = signal.SIGTERM  # the server's "shut down cleanly, now" signal
    run_as: str | None = None  # an OS user to run the server as (set when root is refused)
    install_hint = INSTALL_HINT

    def __init__(self, workdir: Path | None = None) -> None:
        self.binary = find_binary(*self.binaries, hint=self.install_hint)
        self._owns_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix=f"shouhu-{self.name}-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / f"{self.name}.log"
        self.ports: dict[str, int] = {}
        self._choose_ports()
        self._proc: subprocess.Popen[bytes] | None = None
        self._started_once = False

    # --- what subclasses fill in --------------------------------------------------------

    def command(self) -> list[str]:
        raise NotImplementedError

    def is_ready(self) -> bool:
        raise NotImplementedError

    # --- common ---------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self.ports["port"]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _choose_ports(self) -> None:
        self.ports = {name: free_port() for name in self.port_names}

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def start(self) -> Self:
        """Start and wait until ready. A port taken meanwhile by someone else on the first
        start is replaced by another free one; a restart keeps its ports."""
        if self.running:
            return self
        attempts = 1 if self._started_once else 3
        for attempt in range(attempts):
            try:
                self._spawn_and_wait()
            except ServiceError:
                if attempt + 1 == attempts or "in use" not in self.log_tail(5).lower():
                    raise
                self._choose_ports()
            else:
                self._started_once = True
                return self
        raise AssertionError("unreachable")

    def _spawn_and_wait(self) -> None:
        with open(self.log_path, "ab") as log:
            log.write(f"--- start {' '.join(self.command())}\n".encode())
            log.flush()
            self._proc = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                start_new_session=True,  # our signals reach this process only
                user=self.run_as,
            )
        deadline = time.monotonic() + READY_TIMEOUT_S
        delay = 0.02
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                code = self._proc.returncode
                self._proc = None
                raise ServiceError(
                    f"{self.name} exited with {code} while starting; log {self.log_path}:\n"
                    + self.log_tail()
                )
            if self.is_ready():
                return
            time.sleep(delay)
            delay = min(delay * 2, 0.2)
        self.kill()
        raise ServiceError(
            f"{self.name} not ready after {READY_TIMEOUT_S:.0f}s; log {self.log_path}:\n"
            + self.log_tail()
        )

    def stop(self) -> None:
        """Graceful stop (SIGTERM), SIGKILL if it does not exit in time."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(self.stop_signal)
        try:
            proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(STOP_TIMEOUT_S)

    def kill(self) -> None:
        """SIGKILL: the crash a power cut or the OOM killer causes."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.kill()
        proc.wait(STOP_TIMEOUT_S)

    def restart(self) -> Self:
        """Stop and start again on the same port with the same data dir."""
        self.stop()
        return self.start()

    def close(self) -> None:
        """Stop and remove the temp dir (if we made it)."""
        self.stop()
        if self._owns_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<{type(self).__name__} {self.ports} {state} {self.workdir}>"


def _tcp_accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class Mosquitto(Service):
    """Eclipse Mosquitto 2 with persistence, so a restart keeps queued QoS 1 messages of
    persistent sessions. ``password_file``/``acl_file`` turn on authentication."""

    name = "mosquitto"
    binaries = ("mosquitto", "/usr/sbin/mosquitto")

    def __init__(
        self,
        workdir: Path | None = None,
        *,
        password_file: Path | None = None,
        acl_file: Path | None = None,
        extra_config: str = "",
    ) -> None:
        super().__init__(workdir)
        self.password_file = password_file
        self.acl_file = acl_file
        self.extra_config = extra_config
        self.config_path = self.workdir / "mosquitto.conf"

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def config_text(self) -> str:
        user = pwd.getpwuid(os.getuid()).pw_name
        lines = [
            f"listener {self.port} 127.0.0.1",
            f"allow_anonymous {'false' if self.password_file else 'true'}",
            "persistence true",
            f"persistence_location {self.workdir}/",
            "persistence_file mosquitto.db",
            "autosave_interval 1",  # even a SIGKILLed broker loses at most ~1 s of queue
            "max_queued_messages 0",  # 0 = no limit: an offline collector loses nothing
            "max_inflight_messages 20",
            f"user {user}",  # as root, mosquitto would otherwise switch to "mosquitto"
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
            "log_timestamp_format %H:%M:%S",
        ]
        if self.password_file:
            lines.append(f"password_file {self.password_file}")
        if self.acl_file:
            lines.append(f"acl_file {self.acl_file}")
        return "\n".join(lines) + "\n" + self.extra_config

    def command(self) -> list[str]:
        self.config_path.write_text(self.config_text())
        return [self.binary, "-c", str(self.config_path)]

    def is_ready(self) -> bool:
        return _tcp_accepts(self.port)


class InfluxDB1(Service):
    """InfluxDB 1.x (Debian ships 1.6): HTTP API and RPC bind both on loopback, reporting off,
    WAL fsynced on every write so a write is durable once it is acknowledged."""

    name = "influxd"
    binaries = ("influxd", "/usr/bin/influxd")
    port_names = ("port", "rpc")

    def __init__(self, workdir: Path | None = None) -> None:
        super().__init__(workdir)
        self.config_path = self.workdir / "influxdb.conf"

    def config_text(self) -> str:
        d = self.workdir
        return f"""\
reporting-disabled = true
bind-address = "127.0.0.1:{self.ports["rpc"]}"

[meta]
  dir = "{d}/meta"

[data]
  dir = "{d}/data"
  wal-dir = "{d}/wal"
  wal-fsync-delay = "0s"
  query-log-enabled = false

[monitor]
  store-enabled = false

[http]
  enabled = true
  bind-address = "127.0.0.1:{self.port}"
  auth-enabled = false
  log-enabled = false
  flux-enabled = false

[ifql]
  enabled = false

[subscriber]
  enabled = false

[continuous_queries]
  enabled = false

[logging]
  level = "warn"
"""

    def command(self) -> list[str]:
        self.config_path.write_text(self.config_text())
        return [self.binary, "-config", str(self.config_path)]

    def is_ready(self) -> bool:
        return _http_status(f"{self.url}/ping") == 204


class VictoriaMetrics(Service):
    """VictoriaMetrics single-node: accepts InfluxDB line protocol on /write and /api/v2/write.

    ``-dedup.minScrapeInterval=1ms`` makes a rewritten sample replace itself (our idempotency);
    the long retention keeps test points with old timestamps.
    """

    name = "victoria-metrics"
    binaries = ("victoria-metrics", "/usr/bin/victoria-metrics")

    def command(self) -> list[str]:
        return [
            self.binary,
            f"-httpListenAddr=127.0.0.1:{self.port}",
            f"-storageDataPath={self.workdir / 'data'}",
            "-retentionPeriod=100y",
            "-dedup.minScrapeInterval=1ms",
            "-search.latencyOffset=0s",
            "-loggerLevel=WARN",
        ]

    def is_ready(self) -> bool:
        return _http_status(f"{self.url}/health") == 200

    def force_flush(self) -> None:
        """Make just-written samples visible to queries and exports now."""
        with contextlib.suppress(OSError):
            urllib.request.urlopen(f"{self.url}/internal/force_flush", timeout=5).close()


POSTGRES_HINT = "install it: apt-get install -y postgresql"


def postgres_bin_dir() -> Path:
    """Debian's versioned PostgreSQL binaries (``/usr/lib/postgresql/15/bin``), newest first."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/postgres"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
        reverse=True,
    )
    if not found:
        raise ServiceError(f"postgres not found under /usr/lib/postgresql/*/bin; {POSTGRES_HINT}")
    return Path(found[0]).parent


class PostgreSQL(Service):
    """A private PostgreSQL cluster: loopback TCP on a free port, its unix socket in its own dir
    (never the system one in /var/run/postgresql), trust authentication for ``postgres``.

    PostgreSQL refuses to run as root, so under root the cluster belongs to the ``postgres`` OS
    user and lives in its own temp dir (pytest's temp dirs are private to root); the log stays in
    ``workdir``. ``stop()`` is a *fast* shutdown (SIGINT): the default "smart" one would wait for
    every client to disconnect. ``fsync=off``: a killed server keeps its data (the OS page cache
    has it), only a power cut would lose some, which tests never cause.

        with PostgreSQL() as pg:
            url = pg.create_database("registry_x")   # postgresql://postgres@127.0.0.1:PORT/registry_x
    """

    name = "postgres"
    stop_signal = signal.SIGINT
    install_hint = POSTGRES_HINT
    superuser = "postgres"

    def __init__(self, workdir: Path | None = None) -> None:
        self.bin_dir = postgres_bin_dir()
        self.binaries = (str(self.bin_dir / "postgres"),)
        self.initdb = find_binary(str(self.bin_dir / "initdb"), hint=POSTGRES_HINT)
        self.pg_isready = find_binary(str(self.bin_dir / "pg_isready"), hint=POSTGRES_HINT)
        super().__init__(workdir)
        if os.geteuid() == 0:
            self.run_as = "postgres"
            self.cluster_dir = Path(tempfile.mkdtemp(prefix="shouhu-pgdata-"))
            shutil.chown(self.cluster_dir, user="postgres", group="postgres")
        else:
            self.cluster_dir = self.workdir / "cluster"
            self.cluster_dir.mkdir(exist_ok=True)
        self.data_dir = self.cluster_dir / "data"
        self.socket_dir = self.cluster_dir / "socket"

    @property
    def url(self) -> str:
        return self.database_url("postgres")

    def database_url(self, database: str) -> str:
        return f"postgresql://{self.superuser}@127.0.0.1:{self.port}/{database}"

    def _initdb(self) -> None:
        """Create the cluster once; a restart reuses it."""
        if (self.data_dir / "PG_VERSION").exists():
            return
        with open(self.log_path, "ab") as log:
            done = subprocess.run(
                [
                    self.initdb,
                    f"--pgdata={self.data_dir}",
                    f"--username={self.superuser}",
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--locale=C.UTF-8",
                    "--no-sync",
                    "--no-instructions",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.cluster_dir,
                user=self.run_as,
                check=False,
            )
        if done.returncode != 0:
            raise ServiceError(f"initdb failed; log {self.log_path}:\n" + self.log_tail())

    def command(self) -> list[str]:
        self._initdb()
        self.socket_dir.mkdir(exist_ok=True)
        if self.run_as:
            shutil.chown(self.socket_dir, user=self.run_as)
        return [
            self.binary,
            "-D",
            str(self.data_dir),
            "-p",
            str(self.port),
            "-k",
            str(self.socket_dir),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "fsync=off",
            "-c",
            "full_page_writes=off",
            "-c",
            "shared_buffers=16MB",
            "-c",
            "max_connections=60",
            "-c",
            "logging_collector=off",
        ]

    def is_ready(self) -> bool:
        done = subprocess.run(
            [
                self.pg_isready,
                "-q",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                self.superuser,
                "-d",
                "postgres",
                "-t",
                "1",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
        )
        return done.returncode == 0

    def kill(self) -> None:
        """SIGKILL the postmaster *and* its backends (its process group), as a crash would."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        super().kill()

    def create_database(self, name: str, *, icu_locale: str | None = None) -> str:
        """A fresh, empty database; returns its URL. ``name`` must be a plain identifier.

        ``icu_locale`` (``"en-US"``) gives it a natural-language collation, as production
        databases often have (the cluster itself is ``C.UTF-8``, code point order)."""
        if not name.replace("_", "").isalnum() or not name.isascii():
            raise ValueError(f"not a plain database name: {name!r}")
        if icu_locale is not None and not icu_locale.replace("-", "").isalnum():
            raise ValueError(f"not an ICU locale: {icu_locale!r}")
        import psycopg

        options = (
            f" TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE '{icu_locale}'"
            if icu_locale
            else ""
        )
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"{options}')
        return self.database_url(name)

    def drop_database(self, name: str) -> None:
        """Drop a database, disconnecting whoever still uses it (PostgreSQL 13+)."""
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def close(self) -> None:
        super().close()
        if self.run_as:
            shutil.rmtree(self.cluster_dir, ignore_errors=True)
