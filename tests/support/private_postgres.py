"""A private PostgreSQL server a test may stop and start: its own data directory, its own
loopback port and socket directory, never the shared server.

It uses the PostgreSQL binaries of the `pgserver` wheel (the project's embedded default, so
every machine that can run click-deploy has them). PostgreSQL refuses to run as root: as
root, the server runs as the `postgres` system user when there is one, else as the user
pgserver itself creates (`pgserver`).

    with private_postgres(free_port()) as server:
        server.url()        # postgresql://postgres@127.0.0.1:PORT/postgres
        server.stop()       # fast shutdown: open connections are ended
        server.start()      # the same data, the same port
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

START_TIMEOUT_SECONDS = 30


def _bin_dir() -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs, about XDG_RUNTIME_DIR: not ours
        from pgserver._commands import POSTGRES_BIN_PATH  # type: ignore[import-untyped]

    return Path(POSTGRES_BIN_PATH)


def _system_user() -> str | None:
    """Who runs the server: None (this user) unless we are root."""
    if os.geteuid() != 0:
        return None
    import pwd

    import pgserver.utils as pg_utils  # type: ignore[import-untyped]

    try:
        pwd.getpwnam("postgres")
        user = "postgres"
    except KeyError:
        user = "pgserver"
        pg_utils.ensure_user_exists(user)
    # As pgserver does: the other user must be able to read and run the wheel's binaries.
    bin_dir = _bin_dir()
    pg_utils.ensure_prefix_permissions(bin_dir)
    pg_utils.ensure_folder_permissions(bin_dir, 0o055)
    pg_utils.ensure_folder_permissions(bin_dir.parent / "lib", 0o044)
    if (bin_dir.parent / "share").exists():
        pg_utils.ensure_folder_permissions(bin_dir.parent / "share", 0o044)
    return user


@dataclass
class PrivatePostgres:
    root: Path  # owned by `user`: data/ and server.log
    port: int
    user: str | None

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log_file(self) -> Path:
        return self.root / "server.log"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, program: str, *args: str) -> None:
        with tempfile.TemporaryFile() as output:
            # Output to a file, not a pipe: the postmaster pg_ctl starts must not hold it.
            result = subprocess.run(
                [str(_bin_dir() / program), *args],
                user=self.user,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                timeout=START_TIMEOUT_SECONDS + 10,
                cwd=self.root,
                check=False,
            )
            if result.returncode != 0:
                output.seek(0)
                raise RuntimeError(
                    f"{program} {' '.join(args)} exited {result.returncode}: "
                    f"{output.read().decode(errors='replace')[-2000:]}\n{self.server_log()}"
                )

    def server_log(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def init(self) -> None:
        self._run(
            "initdb",
            "-D",
            str(self.data_dir),
            "--auth=trust",
            "--encoding=utf8",
            "-U",
            "postgres",
        )

    def start(self) -> None:
        options = f"-p {self.port} -h 127.0.0.1 -k {self.root}"
        self._run(
            "pg_ctl",
            "-D",
            str(self.data_dir),
            "-w",
            "-t",
            str(START_TIMEOUT_SECONDS),
            "-o",
            options,
            "-l",
            str(self.log_file),
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data_dir), "-w", "-m", mode, "stop")

    def running(self) -> bool:
        return (self.data_dir / "postmaster.pid").exists()


@contextmanager
def private_postgres(port: int) -> Iterator[PrivatePostgres]:
    """A fresh server on `port`, stopped and deleted afterwards whatever happened."""
    user = _system_user()
    root = Path(tempfile.mkdtemp(prefix="cd-private-pg-"))
    if user is not None:
        shutil.chown(root, user, user)
    server = PrivatePostgres(root, port, user)
    try:
        server.init()
        server.start()
        yield server
    finally:
        try:
            if server.running():
                server.stop("immediate")
        finally:
            shutil.rmtree(root, ignore_errors=True)
