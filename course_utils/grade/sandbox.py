"""Running grading children safely: limits, the sandbox choice, the launcher, and exit reasons.

A child (``course_utils.grade.child``) runs one submitted notebook. It gets

* resource limits it sets on itself, soft = hard so they cannot be raised back (CPU time, address
  space, file size, open files, processes; no core files), and the seccomp filter of
  ``course_utils.grade.seccomp`` before the first submitted cell;
* under bubblewrap (``--sandbox bwrap``) a filesystem of read-only mounts from an allow-list
  (``mounts.py``: the Python environment, the course package without the grader's parent side,
  a private /tmp), no network, its own pid namespace (it can neither see nor signal the grader or
  another grading thread), an unprivileged uid and no capabilities, ``--die-with-parent``;
* with ``--sandbox none`` only the limits, the seccomp filter and a session of its own: it can
  still read and write what the grader's user can. ``auto`` picks bwrap when it is on PATH and
  works, else none with one warning.

``Launcher`` starts the children (forked from a preloaded zygote, or spawned: ``children.py``) and
stops them all at once when the grading run is interrupted (Ctrl-C).
"""

from __future__ import annotations

import itertools
import shutil
import signal
import subprocess
import sys
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path

from course_utils.grade.children import (
    ChannelReader,
    ChannelTimeout,
    ChildProcess,
    Zygote,
    ZygoteError,
    kill_group,
)
from course_utils.grade.mounts import (
    SANDBOX_WORKDIR,
    Sandbox,
    bwrap_arguments,
    child_environment,
    child_sys_path,
    python_roots,
    stage_package,
)

# Re-exported: the runner reads children through these names.
__all__ = [
    "ChannelReader",
    "ChannelTimeout",
    "GradingInterrupted",
    "Launcher",
    "Limits",
    "Sandbox",
    "SandboxError",
    "choose_sandbox",
    "describe_exit",
]

_NONE_WARNING = (
    "warning: grading without bubblewrap (sandbox 'none'): submissions run with resource limits, "
    "a seccomp filter and their own session only, so a hostile submission could still read or "
    "write files this user can (including solutions/) or tamper with the grader; install the "
    "Debian/Ubuntu package 'bubblewrap' for full isolation"
)


class SandboxError(RuntimeError):
    """The requested sandbox cannot be used (grader misuse: exit code 2)."""


class GradingInterrupted(BaseException):
    """The grading run was interrupted (Ctrl-C): no new child is started."""


@dataclass(frozen=True)
class Limits:
    memory_mb: int = (
        2048  # on top of the child's baseline after setup (child.limit_memory_above_baseline)
    )
    cpu_seconds: int = 120
    file_size_mb: int = 16
    open_files: int = 256
    processes: int | None = None

    def as_job(self) -> dict:
        return {
            "memory_mb": self.memory_mb,
            "cpu_seconds": self.cpu_seconds,
            "file_size_mb": self.file_size_mb,
            "open_files": self.open_files,
            "processes": self.processes,
        }


def choose_sandbox(requested: str, hidden_paths: tuple[Path, ...], staging: Path) -> Sandbox:
    """Resolve ``auto``/``bwrap``/``none`` into a working sandbox (SandboxError if impossible).

    ``staging``: a new folder for the course package copy the child sees (see ``mounts.py``);
    ``hidden_paths``: what must stay invisible even if it lies inside a mounted folder.
    """
    if requested not in ("auto", "bwrap", "none"):
        raise SandboxError(f"--sandbox must be auto, bwrap or none, got {requested!r}")
    roots = python_roots()
    if requested == "none":
        return Sandbox("none", warning=_NONE_WARNING, python_roots=roots)
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        if requested == "bwrap":
            raise SandboxError(
                "--sandbox bwrap: no `bwrap` on PATH (install the package 'bubblewrap')"
            )
        return Sandbox("none", warning=_NONE_WARNING + " (no `bwrap` on PATH)", python_roots=roots)
    stage_package(staging)
    hidden = tuple(Path(path).absolute() for path in hidden_paths)
    sandbox = Sandbox("bwrap", bwrap, staging=staging, python_roots=roots, hidden_paths=hidden)
    code = (  # finds the child module through the mounts without importing it (torch: seconds)
        f"import sys, importlib.util; sys.path[:] = {child_sys_path(sandbox)!r}; "
        "found = importlib.util.find_spec('course_utils.grade.child'); "
        "sys.exit(None if found else 'course_utils.grade.child is not importable inside')"
    )
    probe = bwrap_arguments(sandbox) + [sys.executable, "-I", "-c", code]
    try:
        result = subprocess.run(
            probe,
            capture_output=True,
            timeout=60,
            env=child_environment(SANDBOX_WORKDIR, "/tmp"),
            check=False,
        )
        failure = (
            result.stderr.decode(errors="replace").strip()[-300:] if result.returncode else None
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        failure = str(error)
    if failure is None:
        return sandbox
    if requested == "bwrap":
        raise SandboxError(f"--sandbox bwrap: bubblewrap does not work here: {failure}")
    return Sandbox("none", warning=f"{_NONE_WARNING} (bwrap failed: {failure})", python_roots=roots)


class Launcher:
    """Starts children: forked from a per-thread zygote when possible, else spawned.

    ``interrupt()`` (from any thread) kills every running child and zygote at once; from then on
    ``start`` raises GradingInterrupted instead of starting anything.
    """

    def __init__(
        self,
        sandbox: Sandbox,
        scratch_root: Path,
        preload: list[str],
        fontlist: dict | None,
        startup_timeout: float,
        use_zygote: bool,
    ):
        self.sandbox = sandbox
        self.scratch_root = scratch_root
        self.preload = preload
        self.fontlist = fontlist
        self.startup_timeout = startup_timeout
        self.use_zygote = use_zygote
        self.fallback_reason: str | None = None
        self.interrupted = False
        self._local = threading.local()
        self._zygotes: list[Zygote] = []
        self._spawned: weakref.WeakSet[ChildProcess] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._counter = itertools.count()

    def scratch(self, kind: str) -> Path:
        return self.scratch_root / f"{kind}-{next(self._counter)}"

    def _register(self, process) -> None:
        """Track ``process`` for ``interrupt``; kill it at once if the run is already stopping."""
        with self._lock:
            if isinstance(process, Zygote):
                self._zygotes.append(process)
            else:
                self._spawned.add(process)
            stopping = self.interrupted
        if stopping:
            process.close()
            raise GradingInterrupted()

    def _zygote(self) -> Zygote | None:
        if not self.use_zygote:
            return None
        zygote = getattr(self._local, "zygote", None)
        if zygote is not None and zygote.alive:
            return zygote
        try:
            zygote = Zygote(self.sandbox, self.scratch("zygote"), self.preload, self.fontlist)
            self._register(zygote)
            zygote.wait_ready(self.startup_timeout)
        except (ZygoteError, OSError) as error:
            with self._lock:
                if self.interrupted:
                    raise GradingInterrupted() from None
                self.use_zygote = False  # every later job spawns; warn once
                self.fallback_reason = str(error)
            return None
        self._local.zygote = zygote
        return zygote

    def start(self):
        """A running child waiting for its job (a ZygoteChild or a ChildProcess)."""
        if self.interrupted:
            raise GradingInterrupted()
        zygote = self._zygote()
        if zygote is not None:
            try:
                return zygote.run(self.scratch("child"))
            except ZygoteError:
                self._local.zygote = None  # this one is closed; the next job starts a new one
                if self.interrupted:
                    raise GradingInterrupted() from None
        child = ChildProcess(self.sandbox, self.scratch("child"))
        self._register(child)
        return child

    def stop_forking(self, reason: str) -> None:
        """Spawn a fresh interpreter for every later job (idle zygotes are closed by ``close``)."""
        with self._lock:
            if self.use_zygote:
                self.use_zygote = False
                self.fallback_reason = reason
        self._local.zygote = None

    def interrupt(self) -> None:
        """Start nothing more and SIGKILL every running child and zygote (safe from any thread)."""
        with self._lock:
            self.interrupted = True
            zygotes = list(self._zygotes)
            spawned = list(self._spawned)
        for zygote in zygotes:
            zygote.kill()
        for child in spawned:
            if child.process.returncode is None:
                kill_group(child.process.pid)

    def close(self) -> None:
        with self._lock:
            for zygote in self._zygotes:
                if zygote.alive:
                    try:
                        zygote.control.close()  # the zygote exits after its current child
                    except OSError:
                        pass
                zygote.close()
            self._zygotes.clear()


def describe_exit(returncode: int, exact: bool = True) -> tuple[str, str]:
    """(status, reason) for a child that ended without finishing its job.

    ``exact`` is False under bwrap's spawn mode, where an exit code above 128 may mean a signal.
    """
    if returncode < 0 or (not exact and returncode > 128):
        number = -returncode if returncode < 0 else returncode - 128
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = f"signal {number}"
        if number == signal.SIGXCPU:
            return "timeout", "the process used up its CPU-time limit"
        if number == signal.SIGXFSZ:
            return "error", "the process wrote a file above the file-size limit"
        if number == signal.SIGABRT:
            return (
                "crashed",
                "the process aborted (SIGABRT: os.abort(), or a failed check in native code)",
            )
        extra = "" if exact else " (or exited with that code)"
        return "crashed", f"the process was killed by {name}{extra}"
    return (
        "crashed",
        f"the process exited with code {returncode} (os._exit, or a crash in native code)",
    )
