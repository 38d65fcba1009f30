"""Starting the grading children: limits, bubblewrap, the result channel, killing them.

A child runs ``course_utils.grade.child`` on one job (one submitted notebook). It is started in
one of two ways (``Launcher``):

* forked from a ZYGOTE (default): a long-lived interpreter per grading thread that imported
  torch, matplotlib and the course library once, inside the same sandbox, and forks one child
  per job; a job then costs ~0.1-0.3 s instead of ~2-3 s. The zygote runs one child at a time
  and wipes every writable place after it (see ``child.py``). Used only where the seccomp
  filter works (it stops a child from leaving a process behind or reaching the zygote);
* SPAWNED (``ChildProcess``, ``--spawn``, or the fallback): a fresh interpreter per job.

Either way a child gets

* files of its own in a scratch folder (``job.json`` on stdin, ``stdout.txt`` / ``stderr.txt``
  read back capped at ``STREAM_LIMIT``) and a working dir: under bwrap in a private 64 MiB tmpfs
  at /tmp, without bwrap under the grader's scratch folder;
* a clean environment (no variable of the grader's leaks in), MPLBACKEND=Agg, one thread;
* resource limits it sets on itself, soft = hard so they cannot be raised back (CPU time,
  address space, file size, open files, processes; no core files), and the seccomp filter of
  ``course_utils.grade.seccomp`` before the first submitted cell;
* its own session and process group, killed as a whole on timeout;
* results only through a pipe, read here with a deadline and a size cap (``CHANNEL_LIMIT``): a
  child that floods, stalls or writes garbage cannot stall the grader.

Sandbox modes (``--sandbox``): ``bwrap`` runs the child (or the zygote) under bubblewrap with a
read-only root, a private /tmp, no network, its own pid namespace (it can neither see nor signal
the grader or another grading thread), no capabilities, ``--die-with-parent``, and tmpfs over the
instructor's solutions, the submissions and the output folders. ``none`` relies on the limits,
the seccomp filter and the new session only: the child can still read and write what the
grader's user can. ``auto`` picks bwrap when it is on PATH and works, else none with one warning.
"""

from __future__ import annotations

import itertools
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from course_utils.grade.codec import ProtocolError

CHANNEL_LIMIT = 16 * 1024 * 1024  # bytes the child may send in total
STREAM_LIMIT = 64 * 1024  # bytes of stdout / stderr read back
SANDBOX_WORKDIR = "/tmp/work"  # the child's working dir inside bwrap
SANDBOX_TMP_BYTES = 64 * 1024 * 1024
PACKAGE_PARENT = Path(__file__).resolve().parents[2]  # the folder holding course_utils/

_NONE_WARNING = (
    "warning: grading without bubblewrap (sandbox 'none'): submissions run with resource limits, "
    "a seccomp filter and their own session only, so a hostile submission could still read or "
    "write files this user can (including solutions/) or tamper with the grader; install the "
    "Debian/Ubuntu package 'bubblewrap' for full isolation"
)


class SandboxError(RuntimeError):
    """The requested sandbox cannot be used (grader misuse: exit code 2)."""


@dataclass(frozen=True)
class Limits:
    memory_mb: int = 3072
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


@dataclass(frozen=True)
class Sandbox:
    mode: str  # "bwrap" or "none"
    bwrap: str | None = None
    hidden_paths: tuple[Path, ...] = ()
    warning: str | None = None
    needed_paths: tuple[Path, ...] = field(default=())


def child_sys_path() -> list[str]:
    """The grader's import path for the child, without the current directory."""
    cwd = os.getcwd()
    paths = [str(PACKAGE_PARENT)]
    for entry in sys.path:
        if entry and os.path.abspath(entry) != cwd and entry not in paths:
            paths.append(entry)
    return paths


def _needed_paths() -> tuple[Path, ...]:
    """Folders the child must be able to read: the interpreter, the venv and the import path."""
    candidates = [Path(sys.prefix), Path(sys.base_prefix), Path(sys.executable).resolve().parent]
    candidates += [Path(entry) for entry in child_sys_path()]
    needed = []
    for candidate in candidates:
        try:
            resolved = candidate.resolve()
        except OSError:
            continue
        if resolved.exists() and resolved not in needed:
            needed.append(resolved)
    return tuple(needed)


def _is_within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def bwrap_arguments(sandbox: Sandbox) -> list[str]:
    """The bubblewrap command line up to (not including) the command to run."""
    arguments = [
        sandbox.bwrap or "bwrap",
        "--ro-bind", "/", "/",
        "--dev", "/dev",
        "--proc", "/proc",
        "--size", str(SANDBOX_TMP_BYTES), "--tmpfs", "/tmp",
        "--dir", SANDBOX_WORKDIR,
    ]  # fmt: skip
    tmp = Path("/tmp")
    hidden = []
    for path in sandbox.hidden_paths:
        resolved = path.resolve()
        if _is_within(resolved, tmp) or not resolved.exists():
            continue  # already hidden by the private /tmp, or nothing to hide
        if resolved.is_dir():
            arguments += ["--tmpfs", str(resolved)]
        else:
            arguments += ["--ro-bind", "/dev/null", str(resolved)]
        hidden.append(resolved)
    for needed in sandbox.needed_paths:
        # Put back what the child needs if it lies in a hidden folder (e.g. a venv under /tmp).
        if _is_within(needed, tmp) or any(_is_within(needed, folder) for folder in hidden):
            arguments += ["--ro-bind", str(needed), str(needed)]
    arguments += [
        "--chdir", SANDBOX_WORKDIR,
        "--unshare-all",
        "--cap-drop", "ALL",
        "--die-with-parent",
        "--new-session",
    ]  # fmt: skip
    return arguments


def choose_sandbox(requested: str, hidden_paths: tuple[Path, ...]) -> Sandbox:
    """Resolve ``auto``/``bwrap``/``none`` into a working sandbox (SandboxError if impossible)."""
    if requested not in ("auto", "bwrap", "none"):
        raise SandboxError(f"--sandbox must be auto, bwrap or none, got {requested!r}")
    needed = _needed_paths()
    if requested == "none":
        return Sandbox("none", warning=_NONE_WARNING, needed_paths=needed)
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        if requested == "bwrap":
            raise SandboxError(
                "--sandbox bwrap: no `bwrap` on PATH (install the package 'bubblewrap')"
            )
        return Sandbox("none", warning=_NONE_WARNING + " (no `bwrap` on PATH)", needed_paths=needed)
    sandbox = Sandbox("bwrap", bwrap=bwrap, hidden_paths=hidden_paths, needed_paths=needed)
    probe = bwrap_arguments(sandbox) + [sys.executable, "-I", "-c", "import course_utils"]
    try:
        result = subprocess.run(
            probe,
            capture_output=True,
            timeout=60,
            env=_environment("/tmp/work", "/tmp"),
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
    return Sandbox(
        "none", warning=f"{_NONE_WARNING} (bwrap failed: {failure})", needed_paths=needed
    )


def _environment(home: str, tmp: str) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "HOME": home,
        "TMPDIR": tmp,
        "MPLBACKEND": "Agg",
        "COURSE_DEVICE": "cpu",
        "COURSE_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
    }


def _read_capped(path: Path, limit: int = STREAM_LIMIT) -> str:
    """The last ``limit`` bytes of a file the child wrote (it may be huge or missing)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - limit))
            return handle.read(limit).decode("utf-8", errors="replace")
    except OSError:
        return ""


class ChannelTimeout(Exception):
    """No complete message arrived before the deadline."""


class ZygoteError(RuntimeError):
    """The zygote could not start or stopped answering."""


class ChannelReader:
    """Reads the child's line-delimited JSON events from the read end of its pipe."""

    exact_status = True  # False when an exit code > 128 may also mean "killed by a signal"

    def __init__(self, read_fd: int, scratch: Path):
        self._reader = read_fd
        self._buffer = bytearray()
        self._received = 0
        self._eof = False
        self.scratch = scratch

    def read_event(self, deadline: float) -> dict | None:
        """The next message, ``None`` at end of channel; ChannelTimeout / ProtocolError otherwise."""
        while True:
            newline = self._buffer.find(b"\n")
            if newline >= 0:
                line = bytes(self._buffer[:newline])
                del self._buffer[: newline + 1]
                return self._parse(line)
            if self._eof:
                if self._buffer:
                    raise ProtocolError("the channel ended in the middle of a message")
                return None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ChannelTimeout()
            ready, _, _ = select.select([self._reader], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(self._reader, 1 << 16)
            if not chunk:
                self._eof = True
                continue
            self._received += len(chunk)
            if self._received > CHANNEL_LIMIT:
                raise ProtocolError(f"more than {CHANNEL_LIMIT // 2**20} MiB of results")
            self._buffer += chunk

    @staticmethod
    def _parse(line: bytes) -> dict:
        try:
            message = json.loads(line)
        except (ValueError, RecursionError) as error:
            raise ProtocolError(f"a message is not JSON ({type(error).__name__})") from None
        if not isinstance(message, dict) or not isinstance(message.get("event"), str):
            raise ProtocolError("a message is not an event object")
        return message

    def stderr_tail(self, characters: int = 300) -> str:
        return _read_capped(self.scratch / "stderr.txt")[-characters:]

    def stdout_text(self) -> str:
        return _read_capped(self.scratch / "stdout.txt")

    def _release(self) -> None:
        os.close(self._reader)
        shutil.rmtree(self.scratch, ignore_errors=True)


def _write_job(job: dict, scratch: Path) -> Path:
    path = scratch / "job.json"
    path.write_text(json.dumps(job, allow_nan=False), encoding="utf-8")
    return path


def _bootstrap(call: str) -> str:
    """``python -c`` code: the grader's import path, then ``call`` from the child module."""
    return f"import sys; sys.path[:] = {child_sys_path()!r}; import course_utils.grade.child as c; {call}"


class ChildProcess(ChannelReader):
    """Spawn mode: a fresh interpreter (under bwrap when chosen) for one job."""

    def __init__(self, sandbox: Sandbox, job: dict, scratch: Path):
        scratch.mkdir(parents=True)
        read_fd, write_fd = os.pipe()
        super().__init__(read_fd, scratch)
        self.exact_status = sandbox.mode != "bwrap"  # bwrap reports a signal as 128 + N
        job_path = _write_job(dict(job, channel_fd=write_fd), scratch)
        if sandbox.mode == "bwrap":
            prefix = bwrap_arguments(sandbox)
            cwd, env = str(scratch), _environment(SANDBOX_WORKDIR, "/tmp")
        else:
            workdir = scratch / "work"
            workdir.mkdir()
            prefix = []
            cwd, env = str(workdir), _environment(str(workdir), str(workdir))
        # -I: no PYTHON* variables, no user site, no current dir on sys.path.
        command = prefix + [sys.executable, "-I", "-c", _bootstrap("c.main()")]
        try:
            with (
                open(job_path, "rb") as stdin,
                open(scratch / "stdout.txt", "wb") as stdout,
                open(scratch / "stderr.txt", "wb") as stderr,
            ):
                self.process = subprocess.Popen(
                    command,
                    stdin=stdin,
                    stdout=stdout,
                    stderr=stderr,
                    pass_fds=(write_fd,),
                    start_new_session=True,
                    cwd=cwd,
                    env=env,
                )
        finally:
            os.close(write_fd)  # the child holds the only write end: EOF when it is gone

    def kill(self) -> None:
        """SIGKILL the child's whole process group (under bwrap that ends its pid namespace)."""
        if self.process.returncode is None:  # never signal a reaped pid: it may be reused
            _kill_group(self.process.pid)
            self.process.wait()

    def wait(self, timeout: float = 5.0) -> int:
        """Exit status once the child has ended (killed if it lingers beyond ``timeout``).

        The group is killed while the leader is still unreaped, so stragglers of its session go
        too and the group id cannot belong to someone else yet.
        """
        if self.process.returncode is None:
            _wait_unreaped(self.process.pid, timeout)
            _kill_group(self.process.pid)
            self.process.wait()
        return self.process.returncode

    def close(self) -> None:
        """Kill if still running, release the pipe, delete the scratch folder."""
        self.kill()
        self._release()


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _wait_unreaped(pid: int, timeout: float) -> bool:
    """Wait up to ``timeout`` for ``pid`` to exit WITHOUT reaping it; True if it exited."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT | os.WNOHANG) is not None:
                return True
        except ChildProcessError:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)


class Zygote:
    """A preloaded interpreter (in the sandbox) that forks one child per job; see child.py."""

    def __init__(
        self,
        sandbox: Sandbox,
        scratch: Path,
        preload: list[str],
        fontlist: dict | None,
        startup_timeout: float,
    ):
        self.sandbox = sandbox
        self.scratch = scratch
        scratch.mkdir(parents=True)
        self.control, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        if sandbox.mode == "bwrap":
            prefix, cwd = bwrap_arguments(sandbox), str(scratch)
            workroot, wipe = "/tmp", ["/tmp", "/dev/shm"]
        else:
            prefix, cwd = [], str(scratch)
            workroot = str(scratch / "work")
            wipe = [workroot]
            os.mkdir(workroot)
        init_path = scratch / "init.json"
        init = {
            "preload": preload,
            "matplotlib_fontlist": fontlist,
            "workroot": workroot,
            "wipe": wipe,
        }
        init_path.write_text(json.dumps(init), encoding="utf-8")
        command = prefix + [
            sys.executable,
            "-I",
            "-c",
            _bootstrap(f"c.zygote_main({theirs.fileno()})"),
        ]
        try:
            with (
                open(scratch / "zygote.out", "wb") as out,
                open(scratch / "zygote.err", "wb") as err,
            ):
                self.process = subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    pass_fds=(theirs.fileno(),),
                    start_new_session=True,
                    cwd=cwd,
                    env=_environment(workroot, workroot),
                )
        finally:
            theirs.close()
        with open(init_path, "rb") as init_file:
            socket.send_fds(self.control, [b'{"init": true}'], [init_file.fileno()])
        ready = self._receive(time.monotonic() + startup_timeout)
        if not ready or not ready.get("ready"):
            detail = _read_capped(scratch / "zygote.err")[-300:].strip()
            self.close()
            raise ZygoteError(f"the preloaded interpreter did not start: {detail or ready}")
        if ready.get("threads", 1) != 1:
            self.close()
            raise ZygoteError(
                f"preloading left {ready.get('threads')} threads running, so forking would be unsafe"
            )

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def _receive(self, deadline: float) -> dict | None:
        """The zygote's next control message; None if it is gone or silent until ``deadline``."""
        remaining = deadline - time.monotonic()
        if self.control.fileno() < 0:  # closed by an earlier failure
            return None
        if remaining <= 0 or not select.select([self.control], [], [], remaining)[0]:
            return None
        try:
            message = self.control.recv(65536)
            return json.loads(message) if message else None
        except (OSError, ValueError):
            return None

    def run(self, job: dict, scratch: Path) -> ZygoteChild:
        scratch.mkdir(parents=True)
        read_fd, write_fd = os.pipe()
        job_path = _write_job(job, scratch)  # the child writes to the pipe it receives
        try:
            with (
                open(job_path, "rb") as job_file,
                open(scratch / "stdout.txt", "wb") as stdout,
                open(scratch / "stderr.txt", "wb") as stderr,
            ):
                fds = [job_file.fileno(), write_fd, stdout.fileno(), stderr.fileno()]
                socket.send_fds(self.control, [b'{"run": true}'], fds)
        except OSError as error:
            os.close(read_fd)
            raise ZygoteError(f"cannot reach the zygote: {error}") from None
        finally:
            os.close(write_fd)
        started = self._receive(time.monotonic() + 30)
        if not started or not isinstance(started.get("started"), int):
            os.close(read_fd)
            shutil.rmtree(scratch, ignore_errors=True)
            self.close()
            raise ZygoteError(f"the zygote did not start a child ({started})")
        return ZygoteChild(self, read_fd, scratch)

    def exit_status(self, timeout: float) -> int | None:
        message = self._receive(time.monotonic() + timeout)
        if message is None or not isinstance(message.get("exited"), int):
            self.close()  # silent or confused: never reuse it
            return None
        return message["exited"]

    def request_kill(self) -> None:
        try:
            self.control.send(b'{"kill": true}')
        except OSError:
            pass

    def close(self) -> None:
        if self.process.returncode is None:  # never signal a reaped pid: it may be reused
            _kill_group(self.process.pid)
            self.process.wait()
        self.control.close()
        shutil.rmtree(self.scratch, ignore_errors=True)


class ZygoteChild(ChannelReader):
    """A child forked by a zygote: events on its own pipe, exit status from the zygote."""

    def __init__(self, zygote: Zygote, read_fd: int, scratch: Path):
        super().__init__(read_fd, scratch)
        self.zygote = zygote
        self.returncode: int | None = None
        self._settled = False

    def wait(self, timeout: float = 5.0) -> int:
        """Exit status reported by the zygote (a lingering child or a lost zygote: SIGKILL)."""
        if not self._settled:
            self._settled = True
            status = self.zygote.exit_status(timeout)  # closes the zygote when it stays silent
            self.returncode = -signal.SIGKILL if status is None else status
        return self.returncode

    def kill(self) -> None:
        if not self._settled:
            self.zygote.request_kill()
            self.wait(10.0)

    def close(self) -> None:
        self.kill()
        self._release()


class Launcher:
    """Starts children: forked from a per-thread zygote when possible, else spawned."""

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
        self._local = threading.local()
        self._zygotes: list[Zygote] = []
        self._lock = threading.Lock()
        self._counter = itertools.count()

    def scratch(self, kind: str) -> Path:
        return self.scratch_root / f"{kind}-{next(self._counter)}"

    def _zygote(self) -> Zygote | None:
        if not self.use_zygote:
            return None
        zygote = getattr(self._local, "zygote", None)
        if zygote is not None and zygote.alive:
            return zygote
        try:
            zygote = Zygote(
                self.sandbox,
                self.scratch("zygote"),
                self.preload,
                self.fontlist,
                self.startup_timeout,
            )
        except (ZygoteError, OSError) as error:
            with self._lock:
                self.use_zygote = False  # every later job spawns; warn once
                self.fallback_reason = str(error)
            return None
        with self._lock:
            self._zygotes.append(zygote)
        self._local.zygote = zygote
        return zygote

    def start(self, job: dict):
        """A running child for ``job`` (a ZygoteChild or a ChildProcess)."""
        zygote = self._zygote()
        if zygote is not None:
            try:
                return zygote.run(job, self.scratch("child"))
            except ZygoteError:
                self._local.zygote = None  # this one is closed; the next job starts a new one
        return ChildProcess(self.sandbox, job, self.scratch("child"))

    def stop_forking(self, reason: str) -> None:
        """Spawn a fresh interpreter for every later job (idle zygotes are closed by ``close``)."""
        with self._lock:
            if self.use_zygote:
                self.use_zygote = False
                self.fallback_reason = reason
        self._local.zygote = None

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
        extra = "" if exact else " (or exited with that code)"
        return "crashed", f"the process was killed by {name}{extra}"
    return (
        "crashed",
        f"the process exited with code {returncode} (os._exit, or a crash in native code)",
    )
