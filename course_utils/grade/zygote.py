"""The zygote: a preloaded interpreter forking one grading child per job (runs INSIDE the sandbox).

A zygote imports the heavy modules once (torch, matplotlib, the course library) and forks one
child per job, so a submission costs a fork (~20 ms) instead of a fresh interpreter (~2-3 s).
It runs inside the same sandbox a spawned child would and handles ONE child at a time. Under
bubblewrap ("isolate") each forked child first gets a mount namespace of its own with a fresh,
empty /tmp and /dev/shm (course_utils.grade.isolation): what one submission writes vanishes
with its child. The zygote checks at start that this works (else the parent spawns instead).
Without bubblewrap the zygote wipes its working root after each child. The child gets the same
limits and seccomp filter as in spawn mode; the filter (no fork, no kill, no ptrace) and the
zygote being non-dumpable (no /proc/<pid>/mem) keep a child from reaching the zygote.

Control socket (AF_UNIX SOCK_SEQPACKET, JSON messages; file descriptors ride along):
  parent -> zygote  {"init": true} + [init file]        once; init = {"preload", "workroot",
                                                         "matplotlib_fontlist", "wipe", "isolate"}
  zygote -> parent  {"ready": true, "threads": n, "preload_errors": [...],
                     "isolation_error": str | null}
  parent -> zygote  {"run": true} + [job pipe read end, channel write end, stdout file, stderr file]
  zygote -> parent  {"started": pid}
  parent -> zygote  {"kill": true}                       optional, on timeout
  zygote -> parent  {"exited": returncode}               negative = killed by that signal
"""

from __future__ import annotations

import ctypes
import importlib
import itertools
import json
import os
import select
import shutil
import signal
import socket
import stat
import sys
import tempfile
import traceback

from course_utils.grade import isolation
from course_utils.grade.child import Channel, JobInput, prepare_matplotlib, run_job

_PR_SET_PDEATHSIG = 1
_PR_SET_DUMPABLE = 4


def _prctl(option: int, value: int) -> None:
    ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0)


def _send(control, **message) -> None:
    control.send(json.dumps(message).encode())


def _wipe(roots: list[str]) -> None:
    """Delete everything inside each root (a link in place of a root is left alone).

    Folders the learner made unreadable are made readable first (same owner), so they go too.
    """

    def unlock(function, path, _error) -> None:
        try:
            os.chmod(os.path.dirname(path), stat.S_IRWXU)
            os.chmod(path, stat.S_IRWXU)
            function(path)
        except OSError:
            pass

    for root in roots:
        if os.path.islink(root):
            continue  # never follow a link planted in place of a working root
        try:
            entries = list(os.scandir(root))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    os.chmod(entry.path, stat.S_IRWXU)
                    shutil.rmtree(entry.path, onerror=unlock)
                else:
                    os.unlink(entry.path)
            except OSError:
                pass


def _wait_for_child(control, pid: int) -> int:
    """Wait until child ``pid`` exits, killing its process group if the parent asks."""
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        pidfd = None
    while True:
        watched = [control] + ([pidfd] if pidfd is not None else [])
        ready, _, _ = select.select(watched, [], [], None if pidfd is not None else 0.02)
        if control in ready:
            request = control.recv(4096)
            if not request or json.loads(request).get("kill"):
                try:
                    os.killpg(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            if not request:  # the grader is gone: stop after this child
                os.waitpid(pid, 0)
                os._exit(0)
        finished, status = os.waitpid(pid, os.WNOHANG)
        if finished:
            if pidfd is not None:
                os.close(pidfd)
            return os.waitstatus_to_exitcode(status)


def _isolate(init: dict, home: str) -> str:
    """In a forked child under bwrap: fresh /tmp and /dev/shm; returns the working dir."""
    isolate = init["isolate"]
    isolation.private_filesystem(
        isolate["size_bytes"], isolate["keep_under_tmp"], isolate["hold_dir"]
    )
    os.makedirs(home)  # matplotlib's config dir (with the font cache), as the zygote had it
    os.chdir(home)
    prepare_matplotlib(init.get("matplotlib_fontlist"))
    os.makedirs(isolate["workdir"])
    return isolate["workdir"]


def _probe_isolation(init: dict, home: str) -> str | None:
    """Fork once and try ``_isolate``: None if it works, else why not."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        try:
            _isolate(init, home)
            message = b""
        except BaseException as error:  # noqa: BLE001 - reported to the parent
            message = f"{type(error).__name__}: {error}".encode()[:500]
        os.write(write_end, message)
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:
        message = reader.read()
    os.waitpid(pid, 0)
    return message.decode(errors="replace") or None


def _run_forked_child(
    control, fds: list[int], init: dict, home: str, workdir: str, zygote_pid: int
) -> None:
    """In the forked child: detach, own filesystem, wire up files, run the job (never returns)."""
    try:
        os.setsid()
        if init.get("isolate"):
            workdir = _isolate(init, home)  # first: it resets the two settings below
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)  # the zygote dies -> so does the child
        if os.getppid() != zygote_pid:  # it died before the line above (Ctrl-C): nobody waits
            os._exit(1)
        _prctl(_PR_SET_DUMPABLE, 1)  # its own /proc/self stays readable to it
        control.close()
        job_fd, channel_fd, stdout_fd, stderr_fd = fds
        os.dup2(job_fd, 0)
        os.dup2(stdout_fd, 1)
        os.dup2(stderr_fd, 2)
        for fd in (job_fd, stdout_fd, stderr_fd):
            os.close(fd)
        os.chdir(workdir)
        os.environ["HOME"] = os.environ["TMPDIR"] = workdir
        tempfile.tempdir = None  # recomputed from TMPDIR
        job_input = JobInput()
        run_job(job_input.read_job(), Channel(channel_fd), job_input)
    except BaseException:  # noqa: BLE001 - a grader bug: show it in the child's stderr
        traceback.print_exc()
        sys.stderr.flush()
    os._exit(70)


def zygote_main(control_fd: int) -> None:
    control = socket.socket(fileno=control_fd)
    message, fds, _, _ = socket.recv_fds(control, 4096, 1)
    if not message or not fds:
        os._exit(2)
    with os.fdopen(fds[0], "rb") as handle:
        init = json.loads(handle.read())
    workroot = init["workroot"]
    home = os.path.join(workroot, "zygote")

    def make_home() -> None:
        os.makedirs(home, exist_ok=True)
        os.chdir(home)
        prepare_matplotlib(init.get("matplotlib_fontlist"))  # MPLCONFIGDIR=<home>/.matplotlib

    make_home()
    errors = []
    for module in init["preload"]:
        try:
            importlib.import_module(module)
        except Exception as error:  # noqa: BLE001 - the setup cell will report it precisely
            errors.append(f"{module}: {type(error).__name__}: {error}"[:300])
    threads = len(os.listdir("/proc/self/task")) if os.path.isdir("/proc/self/task") else 1
    _prctl(_PR_SET_DUMPABLE, 0)  # a child cannot open /proc/<zygote>/mem
    isolation_error = _probe_isolation(init, home) if init.get("isolate") else None
    _send(
        control,
        ready=True,
        threads=threads,
        preload_errors=errors,
        isolation_error=isolation_error,
    )
    for number in itertools.count():
        message, fds, _, _ = socket.recv_fds(control, 4096, 4)
        if not message:
            os._exit(0)  # the grader closed the socket
        if len(fds) != 4:  # e.g. a kill request that arrived after its child had exited
            for fd in fds:
                os.close(fd)
            continue
        workdir = os.path.join(workroot, f"job-{number}")
        if not init.get("isolate"):
            os.makedirs(workdir)
        zygote_pid = os.getpid()
        pid = os.fork()
        if pid == 0:
            _run_forked_child(control, fds, init, home, workdir, zygote_pid)
        for fd in fds:
            os.close(fd)
        _send(control, started=pid)
        returncode = _wait_for_child(control, pid)
        _wipe(init["wipe"])
        make_home()
        _send(control, exited=returncode)
