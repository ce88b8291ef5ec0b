"""A private Docker engine for tests that need a second daemon, or one they may stop.

`PrivateEngine` runs its own `dockerd` (Debian's docker.io, /usr/sbin/dockerd) beside the
shared one, with nothing in common with it: its own API socket /run/cd-docker-NAME.sock,
exec root /run/cd-docker-NAME (where its own containerd keeps its socket and state),
data root /var/lib/cd-docker-NAME (images, build cache, containerd's content), pid file,
and `--iptables=false --bridge=none` like the shared one. It can be stopped (SIGTERM, or
SIGKILL) and started again on the same socket and data root, which keep its images and
build cache.

An engine that stops does not end the build containers its BuildKit started (runc
processes outlive dockerd), and one killed leaves its mounts behind: `stop` ends those
containers (found by their bundle under the data root) and `close` unmounts what is left
and removes every directory. NAME carries the pid of the test process that owns the
engine, so a later session removes the engine of a session that was killed (`sweep`).

Base images come from the mirror (localhost:5000, plain HTTP to localhost), and pushes to
127.0.0.1:5001 work: a fresh data root needs no configuration.
(PYTEST_DONT_REWRITE: helpers raise their own AssertionErrors.)
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from tests.support.infra import DOCKER_CLI, docker_engine_answers, docker_env
from tests.support.registry_server import cannot_start

DOCKERD = "/usr/sbin/dockerd"  # Debian's docker.io
RUNC = "runc"
RUN_DIR = Path("/run")
DATA_DIR = Path("/var/lib")
PREFIX = "cd-docker-"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
_OWNED = re.compile(r"^t(\d+)-[a-z0-9-]+$")  # the name of an engine a test process owns


def _mount_points() -> list[str]:
    """Every mount point of this mount namespace (octal escapes of mountinfo decoded)."""
    points = []
    with open("/proc/self/mountinfo", encoding="utf-8") as mountinfo:
        for line in mountinfo:
            fields = line.split()
            if len(fields) > 4:
                points.append(re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), fields[4]))
    return points


def _cmdline(pid: int) -> str | None:
    """The command line of a live process; None when it is gone or a zombie."""
    try:
        status = Path(f"/proc/{pid}/stat").read_text()
        if status.rpartition(")")[2].split()[0] in ("Z", "X"):
            return None
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (OSError, IndexError):
        return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class PrivateEngine:
    """One private dockerd: `start`, `stop`, `start` again, `close` (always)."""

    def __init__(self, name: str, log_dir: Path) -> None:
        if not re.fullmatch(r"[a-z0-9-]{1,40}", name):
            raise ValueError(f"engine name {name!r}: lowercase letters, digits, dashes")
        self.name = name
        self.socket = RUN_DIR / f"{PREFIX}{name}.sock"
        self.host = f"unix://{self.socket}"
        self.exec_root = RUN_DIR / f"{PREFIX}{name}"
        self.pidfile = RUN_DIR / f"{PREFIX}{name}.pid"
        self.data_root = DATA_DIR / f"{PREFIX}{name}"
        self.log_path = log_dir / f"dockerd-{name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    # ------------------------------------------------------------------ probes

    def answers(self, timeout: float = 3.0) -> bool:
        """GET /_ping answers "OK" on the engine's socket."""
        return docker_engine_answers(timeout, str(self.socket))

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text("utf-8", "replace").splitlines()[-lines:])
        except OSError:
            return ""

    # ------------------------------------------------------------------ start / stop

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start dockerd and wait until it answers; an AssertionError with its log if not."""
        if self.running:
            raise AssertionError(f"engine {self.name} is already running")
        self._forget_dead_containerd()
        self.data_root.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        argv = [
            DOCKERD,
            "--host",
            self.host,
            "--data-root",
            str(self.data_root),
            "--exec-root",
            str(self.exec_root),
            "--pidfile",
            str(self.pidfile),
            "--iptables=false",
            "--bridge=none",
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # its own process group: signalled whole on close
            )
        self.starts += 1
        deadline = time.monotonic() + timeout
        while not self.answers(timeout=1.0):
            if self.process.poll() is not None:
                raise AssertionError(
                    f"dockerd {self.name} exited {self.process.returncode} at start:\n"
                    f"{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"dockerd {self.name} did not answer within {timeout:g} s:\n{self.log_tail()}"
                )
            time.sleep(0.1)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT) -> None:
        """Stop dockerd with `sig` (SIGKILL after `timeout`), then end the build containers
        its BuildKit left running. The data root stays for the next `start`."""
        process = self.process
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(sig)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
        if process is not None:
            # Its containerd and anything else of its process group.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
        self._end_leftovers()

    def kill(self) -> None:
        """SIGKILL: the engine dies at once, as on a crash."""
        self.stop(signal.SIGKILL)

    def restart(self, sig: int = signal.SIGTERM) -> None:
        self.stop(sig)
        self.start()

    def close(self) -> None:
        """Stop it and remove everything it made: mounts, directories, socket, pid file."""
        self.stop()
        for point in sorted(_mount_points(), key=len, reverse=True):
            if point.startswith((f"{self.data_root}/", f"{self.exec_root}/")) or point in (
                str(self.data_root),
                str(self.exec_root),
            ):
                subprocess.run(["umount", "-l", point], capture_output=True, check=False)
        for path in (self.data_root, self.exec_root):
            shutil.rmtree(path, ignore_errors=True)
        for path in (self.socket, self.pidfile):
            path.unlink(missing_ok=True)

    def _forget_dead_containerd(self) -> None:
        """dockerd reuses the containerd its pid file names while that pid exists, even as
        an unreaped zombie of an engine that was killed, and then waits for it in vain."""
        pidfile = self.exec_root / "containerd" / "containerd.pid"
        try:
            pid = int(pidfile.read_text().strip())
        except (OSError, ValueError):
            return
        cmdline = _cmdline(pid)
        if cmdline is None or f"{self.exec_root}/" not in cmdline:
            pidfile.unlink(missing_ok=True)

    def _end_leftovers(self) -> None:
        """Build containers (runc, bundle under the data root) and processes naming the
        engine's directories (containerd, shims) that outlived dockerd."""
        runc = shutil.which(RUNC)
        if runc is not None:
            listed = subprocess.run(
                [runc, "list", "--format", "json"], capture_output=True, text=True, check=False
            )
            containers = json.loads(listed.stdout or "null") if listed.returncode == 0 else None
            for container in containers or []:
                if str(container.get("bundle", "")).startswith(f"{self.data_root}/"):
                    subprocess.run(
                        [runc, "delete", "--force", container["id"]],
                        capture_output=True,
                        check=False,
                    )
        roots = (f"{self.data_root}/", f"{self.exec_root}/")
        left = list(self._pids_naming(roots))
        for pid in left:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + STOP_TIMEOUT
        while any(_cmdline(pid) is not None for pid in left) and time.monotonic() < deadline:
            time.sleep(0.05)

    @staticmethod
    def _pids_naming(roots: tuple[str, ...]) -> Iterator[int]:
        """Live processes whose command line contains one of `roots`."""
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            cmdline = _cmdline(int(entry.name))
            if cmdline is not None and any(root in cmdline for root in roots):
                yield int(entry.name)

    # ------------------------------------------------------------------ the CLI

    def docker(
        self, *args: str, check: bool = False, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        """The Debian docker CLI against this engine; output captured as text."""
        result = subprocess.run(
            [DOCKER_CLI, "-H", self.host, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=docker_env({"DOCKER_HOST": self.host}),
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"docker -H {self.host} {' '.join(args)} exited {result.returncode}:\n"
                f"{result.stdout}{result.stderr}"
            )
        return result


def sweep() -> None:
    """Remove the private engines of test sessions that are gone (killed before cleanup)."""
    names = {
        path.name.removeprefix(PREFIX).removesuffix(".pid").removesuffix(".sock")
        for base in (RUN_DIR, DATA_DIR)
        for path in base.glob(f"{PREFIX}t*")
    }
    for name in sorted(names):
        owner = _OWNED.match(name)
        if owner is None or _pid_alive(int(owner[1])):
            continue
        engine = PrivateEngine(name, Path("/tmp"))
        for pid in engine._pids_naming((f"--data-root {engine.data_root} ",)):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)  # that session's dockerd, by its command line
        engine.close()


def new_name(purpose: str) -> str:
    """A name that says which test process owns the engine: t<pid>-<purpose>."""
    return f"t{os.getpid()}-{purpose}"


@contextlib.contextmanager
def private_engine(purpose: str, log_dir: Path) -> Iterator[PrivateEngine]:
    """A started private engine, closed on exit. One that cannot start fails the test
    under CI=true and is skipped elsewhere (not root, no dockerd)."""
    sweep()
    if not Path(DOCKERD).exists():
        cannot_start(f"no {DOCKERD}: apt-get install docker.io (see scripts/infra)")
    if os.geteuid() != 0:
        cannot_start("a private dockerd needs root")
    engine = PrivateEngine(new_name(purpose), log_dir)
    try:
        try:
            engine.start()
        except AssertionError as error:
            cannot_start(f"the private Docker engine did not start: {error}")
        yield engine
    finally:
        engine.close()
