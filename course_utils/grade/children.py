"""Starting one grading child, reading its results, killing it (parent side).

A child runs ``course_utils.grade.child`` on one job (one submitted notebook), started either

* FORKED from a zygote (``Zygote``, ``ZygoteChild``): a long-lived interpreter per grading thread
  that imported torch, matplotlib and the course library once, inside the same sandbox, and forks
  one child per job (~0.1-0.3 s a job instead of ~2-3 s). Under bubblewrap every forked child
  gets a fresh, empty /tmp and /dev/shm of its own (``isolation.py``), so nothing one submission
  writes is seen by the next; without bubblewrap the zygote wipes its working root after each;
* or SPAWNED (``ChildProcess``): a fresh interpreter (under its own bwrap) per job.

Either way a child reads from a pipe on its stdin, written here: first its job (setup and cells), later
each exercise's hidden inputs, sent only when that exercise's cell has run and asks for them, so a
submission never holds the inputs of another exercise; ``stdout.txt`` / ``stderr.txt`` read back capped at
``STREAM_LIMIT``, a clean environment, its own session and process group (killed as a whole), and
sends results only through a pipe read here with a deadline and a size cap (``CHANNEL_LIMIT``).
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from course_utils.feedback.codec import ProtocolError
from course_utils.grade.mounts import (
    HOLD_DIR,
    SANDBOX_TMP_BYTES,
    SANDBOX_WORKDIR,
    Sandbox,
    bwrap_arguments,
    child_environment,
    child_sys_path,
    mounted_under_tmp,
)

CHANNEL_LIMIT = 16 * 1024 * 1024  # bytes the child may send in total
STREAM_LIMIT = 64 * 1024  # bytes of stdout / stderr read back


class ChannelTimeout(Exception):
    """No complete message arrived before the deadline."""


class ZygoteError(RuntimeError):
    """The zygote could not start or stopped answering."""


def read_capped(path: Path, limit: int = STREAM_LIMIT) -> str:
    """The last ``limit`` bytes of a file the child wrote (it may be huge or missing)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - limit))
            return handle.read(limit).decode("utf-8", errors="replace")
    except OSError:
        return ""


def kill_group(pid: int) -> None:
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


class ChannelReader:
    """Reads the child's line-delimited JSON events from the read end of its pipe."""

    exact_status = True  # False when an exit code > 128 may also mean "killed by a signal"

    def __init__(self, read_fd: int, scratch: Path, input_fd: int):
        self._reader = read_fd
        self._input = (
            input_fd  # the write end of the child's stdin: the job, then each item's cases
        )
        os.set_blocking(input_fd, False)
        self._buffer = bytearray()
        self._received = 0
        self._eof = False
        self.scratch = scratch

    def send_line(self, message: object, deadline: float) -> None:
        """Write ``message`` as one JSON line to the child's stdin, giving up at ``deadline``
        (ChannelTimeout). A child that is gone is not an error here: its end of channel says why."""
        view = memoryview((json.dumps(message, allow_nan=False) + "\n").encode())
        while view:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ChannelTimeout()
            if not select.select([], [self._input], [], remaining)[1]:
                continue
            try:
                view = view[os.write(self._input, view) :]
            except BlockingIOError:
                continue
            except OSError:  # EPIPE: the child has ended
                return

    def read_event(self, deadline: float) -> dict | None:
        """The next message; ``None`` at end of channel; else ChannelTimeout / ProtocolError."""
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
        return read_capped(self.scratch / "stderr.txt")[-characters:]

    def _release(self) -> None:
        os.close(self._reader)
        os.close(self._input)
        shutil.rmtree(self.scratch, ignore_errors=True)


def _bootstrap(sandbox: Sandbox, module: str, call: str) -> str:
    """``python -c`` code: the child's import path, then ``call`` in that grade module."""
    path = child_sys_path(sandbox)
    return f"import sys; sys.path[:] = {path!r}; import course_utils.grade.{module} as m; m.{call}"


class ChildProcess(ChannelReader):
    """Spawn mode: a fresh interpreter (under bwrap when chosen) for one job."""

    def __init__(self, sandbox: Sandbox, scratch: Path):
        scratch.mkdir(parents=True)
        read_fd, write_fd = os.pipe()
        stdin_read, stdin_write = os.pipe()
        super().__init__(read_fd, scratch, stdin_write)
        self.exact_status = sandbox.mode != "bwrap"  # bwrap reports a signal as 128 + N
        if sandbox.mode == "bwrap":
            prefix = bwrap_arguments(sandbox)
            cwd, env = str(scratch), child_environment(SANDBOX_WORKDIR, "/tmp")
        else:
            workdir = scratch / "work"
            workdir.mkdir()
            prefix = []
            cwd, env = str(workdir), child_environment(str(workdir), str(workdir))
        # -I: no PYTHON* variables, no user site, no current dir on sys.path.
        call = f"main({write_fd})"
        command = prefix + [sys.executable, "-I", "-c", _bootstrap(sandbox, "child", call)]
        try:
            with (
                open(scratch / "stdout.txt", "wb") as stdout,
                open(scratch / "stderr.txt", "wb") as stderr,
            ):
                self.process = subprocess.Popen(
                    command,
                    stdin=stdin_read,
                    stdout=stdout,
                    stderr=stderr,
                    pass_fds=(write_fd,),
                    start_new_session=True,
                    cwd=cwd,
                    env=env,
                )
        finally:
            os.close(write_fd)  # the child holds the only write end: EOF when it is gone
            os.close(stdin_read)

    def kill(self) -> None:
        """SIGKILL the child's whole process group (under bwrap that ends its pid namespace)."""
        if self.process.returncode is None:  # never signal a reaped pid: it may be reused
            kill_group(self.process.pid)
            self.process.wait()

    def wait(self, timeout: float = 5.0) -> int:
        """Exit status once the child has ended (killed if it lingers beyond ``timeout``).

        The group is killed while the leader is still unreaped, so stragglers of its session go
        too and the group id cannot belong to someone else yet.
        """
        if self.process.returncode is None:
            _wait_unreaped(self.process.pid, timeout)
            kill_group(self.process.pid)
            self.process.wait()
        return self.process.returncode

    def close(self) -> None:
        """Kill if still running, release the pipe, delete the scratch folder."""
        self.kill()
        self._release()


class Zygote:
    """A preloaded interpreter (in the sandbox) that forks one child per job; see zygote.py.

    Starting is two steps, ``Zygote(...)`` (the process exists, so it can be killed) and
    ``wait_ready()`` (imports done, forking works, and under bwrap a child gets a fresh /tmp).
    """

    def __init__(self, sandbox: Sandbox, scratch: Path, preload: list[str], fontlist: dict | None):
        self.sandbox = sandbox
        self.scratch = scratch
        scratch.mkdir(parents=True)
        self.control, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        init = {"preload": preload, "matplotlib_fontlist": fontlist}
        if sandbox.mode == "bwrap":
            prefix, workroot = bwrap_arguments(sandbox), "/tmp"
            init["isolate"] = {
                "size_bytes": SANDBOX_TMP_BYTES,
                "keep_under_tmp": mounted_under_tmp(sandbox),
                "hold_dir": HOLD_DIR,
                "workdir": SANDBOX_WORKDIR,
            }
            init["wipe"] = []  # each child's /tmp and /dev/shm vanish with it
        else:
            prefix, workroot = [], str(scratch / "work")
            init["isolate"] = None
            init["wipe"] = [workroot]
            os.mkdir(workroot)
        init["workroot"] = workroot
        init_path = scratch / "init.json"
        init_path.write_text(json.dumps(init), encoding="utf-8")
        command = prefix + [
            sys.executable,
            "-I",
            "-c",
            _bootstrap(sandbox, "zygote", f"zygote_main({theirs.fileno()})"),
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
                    cwd=str(scratch),
                    env=child_environment(workroot, workroot),
                )
        finally:
            theirs.close()
        with open(init_path, "rb") as init_file:
            socket.send_fds(self.control, [b'{"init": true}'], [init_file.fileno()])

    def wait_ready(self, startup_timeout: float) -> None:
        ready = self._receive(time.monotonic() + startup_timeout)
        problem = None
        if not ready or not ready.get("ready"):
            detail = read_capped(self.scratch / "zygote.err")[-300:].strip()
            problem = f"the preloaded interpreter did not start: {detail or ready}"
        elif ready.get("threads", 1) != 1:
            threads = ready.get("threads")
            problem = f"preloading left {threads} threads running, so forking would be unsafe"
        elif ready.get("isolation_error"):
            problem = (
                "a forked child cannot get a fresh /tmp of its own (nested user namespaces "
                f"disabled?): {str(ready['isolation_error'])[:300]}"
            )
        if problem is not None:
            self.close()
            raise ZygoteError(problem)

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

    def run(self, scratch: Path) -> ZygoteChild:
        """A forked child, waiting for its job on its stdin (``ChildRun`` sends it)."""
        scratch.mkdir(parents=True)
        read_fd, write_fd = os.pipe()
        stdin_read, stdin_write = os.pipe()
        try:
            with (
                open(scratch / "stdout.txt", "wb") as stdout,
                open(scratch / "stderr.txt", "wb") as stderr,
            ):
                fds = [stdin_read, write_fd, stdout.fileno(), stderr.fileno()]
                socket.send_fds(self.control, [b'{"run": true}'], fds)
        except OSError as error:
            os.close(read_fd)
            os.close(stdin_write)
            raise ZygoteError(f"cannot reach the zygote: {error}") from None
        finally:
            os.close(write_fd)
            os.close(stdin_read)
        started = self._receive(time.monotonic() + 30)
        if not started or not isinstance(started.get("started"), int):
            os.close(read_fd)
            os.close(stdin_write)
            shutil.rmtree(scratch, ignore_errors=True)
            self.close()
            raise ZygoteError(f"the zygote did not start a child ({started})")
        return ZygoteChild(self, read_fd, scratch, stdin_write)

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

    def kill(self) -> None:
        """SIGKILL the zygote's group: under bwrap its pid namespace, so every child, goes too."""
        if self.process.returncode is None:  # never signal a reaped pid: it may be reused
            kill_group(self.process.pid)

    def close(self) -> None:
        if self.process.returncode is None:
            kill_group(self.process.pid)
            self.process.wait()
        self.control.close()
        shutil.rmtree(self.scratch, ignore_errors=True)


class ZygoteChild(ChannelReader):
    """A child forked by a zygote: events on its own pipe, exit status from the zygote."""

    def __init__(self, zygote: Zygote, read_fd: int, scratch: Path, input_fd: int):
        super().__init__(read_fd, scratch, input_fd)
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
