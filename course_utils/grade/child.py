"""The code that runs INSIDE the grading child process (started by ``course_utils.grade.sandbox``).

It reads one job (JSON) from stdin::

    {"protocol": 1, "channel_fd": 3, "limits": {...}, "matplotlib_fontlist": {...} | null,
     "setup": "<source of the released notebook's first code cell, magics stripped>",
     "items": [{"exercise": "ex1_1_stable_softmax", "source": "<submitted cell>",
                "function": "stable_softmax", "define_only": false,
                "cases": [{"args": [<encoded>, ...], "kwargs": {"name": <encoded>}}]}]}

and reports, one JSON object per line, on the channel fd (never stdout, which the learner's
``print`` owns; stdout and stderr are files the parent reads back capped)::

    {"event": "ready", "seccomp": true, "seccomp_error": null}    setup ran, filter installed
    {"event": "setup_error", "type": "...", "message": "..."}     the trusted setup failed
    {"event": "start", "exercise": id}                            about to run that cell
    {"event": "cell_error", "exercise": id, "type": "SyntaxError", "message": "...", "line": 3}
    {"event": "result", "exercise": id, "case": i, "output": <encoded return value>}
    {"event": "case_error", "exercise": id, "case": i, "type": "ValueError", "message": "..."}
    {"event": "done", "exercise": id}
    {"event": "finished"}

Order of work: resource limits on itself (first thing), then the setup cell, then the seccomp
filter (no new processes, no signals to others, no raising limits), then each item in order. The
cells share one namespace, as in the notebook. A cell that fails only affects its own exercise.
``define_only`` items (after a restart) re-run an already graded cell so later cells can use its
definitions, without running its cases. The expected values never reach this process.
"""

from __future__ import annotations

import itertools
import json
import os
import resource
import sys
import traceback

from course_utils.exercises.shortcuts import FORBIDDEN_ERROR, ShortcutWatch
from course_utils.grade import codec

MESSAGE_LIMIT = 500  # characters of an exception message sent back


def apply_limits(limits: dict) -> None:
    """Lower soft AND hard limits on this process, so that the learner cannot raise them back."""
    table = {
        "cpu_seconds": (resource.RLIMIT_CPU, 1),
        "memory_mb": (resource.RLIMIT_AS, 1024 * 1024),
        "file_size_mb": (resource.RLIMIT_FSIZE, 1024 * 1024),
        "open_files": (resource.RLIMIT_NOFILE, 1),
        "processes": (resource.RLIMIT_NPROC, 1),
    }
    for name, (which, unit) in table.items():
        if limits.get(name) is None:
            continue
        value = int(limits[name]) * unit
        soft, hard = resource.getrlimit(which)
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        if which == resource.RLIMIT_CPU:
            # SIGXCPU at the soft limit (the parent reports "CPU time limit"), SIGKILL 5 s later.
            resource.setrlimit(
                which, (value, value + 5 if hard == resource.RLIM_INFINITY else hard)
            )
        else:
            resource.setrlimit(which, (value, value))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


class Channel:
    """Line-delimited JSON on a pipe fd; the write end is the only way results reach the parent."""

    def __init__(self, fd: int):
        self.fd = fd

    def send(self, **event) -> None:
        line = (json.dumps(event, allow_nan=False, separators=(",", ":")) + "\n").encode()
        view = memoryview(line)
        while view:
            written = os.write(self.fd, view)
            view = view[written:]


def _short(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= MESSAGE_LIMIT else text[: MESSAGE_LIMIT - 1] + "…"


def describe_exception(error: BaseException, filename: str, source: str) -> dict:
    """type, message and the line of the learner's cell where ``error`` happened (if any)."""
    if isinstance(error, SystemExit):
        message = f"the code called sys.exit({error.code!r})"
    else:
        try:
            message = str(error)
        except Exception:  # a hostile __str__
            message = "<exception message could not be shown>"
    described = {"type": type(error).__name__, "message": _short(message), "line": None}
    if isinstance(error, SyntaxError) and error.filename == filename:
        described["line"] = error.lineno
        described["code"] = _short(error.text or "")
        described["message"] = _short(error.msg)
        return described
    lines = source.splitlines()
    for frame in reversed(traceback.extract_tb(error.__traceback__)):
        if frame.filename == filename and frame.lineno and 0 < frame.lineno <= len(lines):
            described["line"] = frame.lineno
            described["code"] = _short(lines[frame.lineno - 1].strip())
            break
    return described


def _prepare_matplotlib(fontlist: dict | None) -> None:
    """Give matplotlib a writable config dir in the working dir, with the parent's font cache.

    Without it, a read-only home makes matplotlib rebuild its font cache on every run (seconds).
    """
    config_dir = os.path.join(os.getcwd(), ".matplotlib")
    os.makedirs(config_dir, exist_ok=True)
    os.environ["MPLCONFIGDIR"] = config_dir
    if fontlist and isinstance(fontlist.get("name"), str) and "/" not in fontlist["name"]:
        with open(os.path.join(config_dir, fontlist["name"]), "w", encoding="utf-8") as handle:
            handle.write(fontlist["text"])


def run_item(item: dict, namespace: dict, channel: Channel) -> None:
    exercise = item["exercise"]
    filename = f"<submitted cell {exercise}>"
    source = item["source"]
    channel.send(event="start", exercise=exercise)
    try:
        code = compile(source, filename, "exec")
        exec(code, namespace)
    except BaseException as error:  # noqa: BLE001 - every failure of learner code is reported
        if not item["define_only"] or item.get("added"):
            channel.send(
                event="cell_error", exercise=exercise, **describe_exception(error, filename, source)
            )
        channel.send(event="done", exercise=exercise)
        return
    if item["define_only"]:
        channel.send(event="done", exercise=exercise)
        return
    function = namespace.get(item["function"])
    if not callable(function):
        channel.send(
            event="cell_error",
            exercise=exercise,
            type="MissingFunction",
            message=f"the cell does not define a function named `{item['function']}`",
            line=None,
        )
        channel.send(event="done", exercise=exercise)
        return
    forbidden = item.get("forbidden", [])
    for index, case in enumerate(item["cases"]):
        try:
            args = [codec.decode_input(argument) for argument in case["args"]]
            kwargs = {name: codec.decode_input(value) for name, value in case["kwargs"].items()}
            with ShortcutWatch(forbidden) as watch:
                returned = function(*args, **kwargs)
            output = codec.encode(returned)
        except BaseException as error:  # noqa: BLE001
            channel.send(
                event="case_error",
                exercise=exercise,
                case=index,
                **describe_exception(error, filename, source),
            )
            continue
        if watch.used:  # a forbidden shortcut: the parent gives the exercise 0 with the reason
            message = f"calls {watch.used[0]}"
            channel.send(
                event="case_error",
                exercise=exercise,
                case=index,
                type=FORBIDDEN_ERROR,
                message=message,
                line=None,
                code="",
            )
            continue
        channel.send(event="result", exercise=exercise, case=index, output=output)
    channel.send(event="done", exercise=exercise)


def run_job(job: dict, channel: Channel) -> None:
    """Limits, setup, seccomp, then every item; ends the process (never returns)."""
    apply_limits(job["limits"])
    namespace: dict = {"__name__": "__main__", "__builtins__": __builtins__}
    try:
        exec(compile(job["setup"], "<setup cell>", "exec"), namespace)
    except BaseException as error:  # noqa: BLE001
        channel.send(event="setup_error", **describe_exception(error, "<setup cell>", job["setup"]))
        os._exit(3)
    seccomp_error = None
    from course_utils.grade import seccomp

    try:
        seccomp.install()
    except Exception as error:  # noqa: BLE001 - reported to the parent, which warns once
        seccomp_error = f"{type(error).__name__}: {error}"
    channel.send(event="ready", seccomp=seccomp_error is None, seccomp_error=seccomp_error)
    for item in job["items"]:
        run_item(item, namespace, channel)
    channel.send(event="finished")
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 - e.g. the learner's output hit the file-size limit
            pass
    # Skip interpreter shutdown: learner threads, atexit hooks or __del__ methods cannot hang it.
    os._exit(0)


def main() -> None:
    """Spawn mode: a fresh interpreter for one job read from stdin."""
    job = json.load(sys.stdin)
    _prepare_matplotlib(job.get("matplotlib_fontlist"))
    run_job(job, Channel(int(job["channel_fd"])))


# --- zygote mode ------------------------------------------------------------------------------
# A zygote imports the heavy modules once (torch, matplotlib, the course library) and forks one
# child per job, so a submission costs a fork (~20 ms) instead of a fresh interpreter (~2-3 s).
# It runs inside the same sandbox a spawned child would and handles ONE child at a time. Under
# bubblewrap ("isolate") each forked child first gets a mount namespace of its own with a fresh,
# empty /tmp and /dev/shm (course_utils.grade.isolation): what one submission writes vanishes
# with its child. The zygote checks at start that this works (else the parent spawns instead).
# Without bubblewrap the zygote wipes its working root after each child. The child gets the same
# limits and seccomp filter as in spawn mode; the filter (no fork, no kill, no ptrace) and the
# zygote being non-dumpable (no /proc/<pid>/mem) keep a child from reaching the zygote.
#
# Control socket (AF_UNIX SOCK_SEQPACKET, JSON messages; file descriptors ride along):
#   parent -> zygote  {"init": true} + [init file]        once; init = {"preload", "matplotlib_fontlist",
#                                                          "workroot", "wipe", "isolate"}
#   zygote -> parent  {"ready": true, "threads": n, "preload_errors": [...], "isolation_error": str|null}
#   parent -> zygote  {"run": true} + [job file, channel write end, stdout file, stderr file]
#   zygote -> parent  {"started": pid}
#   parent -> zygote  {"kill": true}                       optional, on timeout
#   zygote -> parent  {"exited": returncode}               negative = killed by that signal

_PR_SET_PDEATHSIG = 1
_PR_SET_DUMPABLE = 4


def _prctl(option: int, value: int) -> None:
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0)


def _send(control, **message) -> None:
    control.send(json.dumps(message).encode())


def _wipe(roots: list[str]) -> None:
    """Delete everything inside each root (a link in place of a root is left alone).

    Folders the learner made unreadable are made readable first (same owner), so they go too.
    """
    import shutil
    import stat

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
    import select
    import signal

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
    from course_utils.grade import isolation

    isolate = init["isolate"]
    isolation.private_filesystem(
        isolate["size_bytes"], isolate["keep_under_tmp"], isolate["hold_dir"]
    )
    os.makedirs(home)  # matplotlib's config dir (with the font cache), as the zygote had it
    os.chdir(home)
    _prepare_matplotlib(init.get("matplotlib_fontlist"))
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


def _run_forked_child(control, fds: list[int], init: dict, home: str, workdir: str) -> None:
    """In the forked child: detach, own filesystem, wire up the files, run the job (never returns)."""
    import signal

    try:
        os.setsid()
        if init.get("isolate"):
            workdir = _isolate(init, home)  # first: it resets the two settings below
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)  # the zygote dies -> so does the child
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
        import tempfile

        tempfile.tempdir = None  # recomputed from TMPDIR
        with os.fdopen(0, "rb", closefd=False) as stdin:
            job = json.loads(stdin.read())
        run_job(job, Channel(channel_fd))
    except BaseException:  # noqa: BLE001 - a grader bug: show it in the child's stderr
        traceback.print_exc()
        sys.stderr.flush()
    os._exit(70)


def zygote_main(control_fd: int) -> None:
    import importlib
    import socket

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
        _prepare_matplotlib(init.get("matplotlib_fontlist"))  # MPLCONFIGDIR=<home>/.matplotlib

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
        pid = os.fork()
        if pid == 0:
            _run_forked_child(control, fds, init, home, workdir)
        for fd in fds:
            os.close(fd)
        _send(control, started=pid)
        returncode = _wait_for_child(control, pid)
        _wipe(init["wipe"])
        make_home()
        _send(control, exited=returncode)


if __name__ == "__main__":
    main()
