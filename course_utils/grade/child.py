"""The code that runs INSIDE the grading child process (started by ``course_utils.grade.sandbox``;
spawned, running ``main``, or forked by the preloaded interpreter of ``zygote.py``).

It reads one job (a JSON line) from stdin, a pipe from the parent::

    {"protocol": 2, "limits": {...}, "matplotlib_fontlist": {...} | null,
     "setup": "<source of the released notebook's first code cell, magics stripped>",
     "items": [{"exercise": "ex1_1_stable_softmax", "source": "<submitted cell>",
                "function": "stable_softmax", "define_only": false,
                "forbidden": ["torch.softmax", ...], "input_modules": ["torch.nn.modules.rnn.GRUCell"]}]}

and, once an exercise's cell has run and defined its function, that exercise's cases, one more line
on the same pipe, answering its ``cases_wanted``::

    [{"args": [<encoded>, ...], "kwargs": {"name": <encoded>}}, ...]

so the hidden inputs of an exercise exist in the child only while that exercise runs.

and reports, one JSON object per line, on the channel fd (never stdout, which the learner's
``print`` owns; stdout and stderr are files the parent reads back capped)::

    {"event": "ready", "seccomp": true, "seccomp_error": null}    setup ran, filter installed
    {"event": "setup_error", "type": "...", "message": "..."}     the trusted setup failed
    {"event": "start", "exercise": id}                            about to run that cell
    {"event": "cell_error", "exercise": id, "type": "SyntaxError", "message": "...", "line": 3}
    {"event": "cases_wanted", "exercise": id}                     the cell ran: send its cases
    {"event": "result", "exercise": id, "case": i, "output": <encoded return value>}
    {"event": "case_error", "exercise": id, "case": i, "type": "ValueError", "message": "..."}
    {"event": "done", "exercise": id}
    {"event": "finished"}

Order of work: resource limits on itself (first thing), then the setup cell, then the seccomp
filter (no new processes, no signals to others, no raising limits), then each item in order. The
cells share one namespace, as in the notebook. A cell that fails only affects its own exercise.
Each case is one ``course_utils.feedback.run.run_case``, the step ``check()`` runs in the notebook.
``define_only`` items (after a restart) re-run an already graded cell so later cells can use its
definitions, without running its cases. The expected values never reach this process.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import traceback

from course_utils.feedback import messages
from course_utils.feedback.run import (
    CHANGED_INPUT_ERROR,
    FORBIDDEN_ERROR,
    CaseCall,
    ChangedInput,
    EncodedReturn,
    Raised,
    UsedShortcut,
    run_case,
)
from course_utils.feedback.shortcuts import install_markers

MESSAGE_LIMIT = 500  # characters of an exception message sent back


def apply_limits(limits: dict) -> None:
    """Lower soft AND hard limits on this process, so that the learner cannot raise them back.

    The memory limit is not set here: see ``limit_memory_above_baseline``.
    """
    table = {
        "cpu_seconds": (resource.RLIMIT_CPU, 1),
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


def address_space_bytes() -> int:
    """This process's mapped address space (VmSize), 0 where /proc is not there."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def limit_memory_above_baseline(memory_mb: int | None) -> int:
    """RLIMIT_AS = what is mapped now (interpreter, torch, the setup) + ``memory_mb``; returns the baseline.

    A CUDA build of torch maps ~3.2 GB of address space at import (the CPU build ~0.6 GB) without
    using that memory: a fixed address-space limit would leave a submission nothing on one build and
    plenty on the other. Measured after the trusted setup, the limit bounds what the SUBMISSION maps.
    """
    baseline = address_space_bytes()
    if memory_mb is None:
        return baseline
    value = baseline + int(memory_mb) * 1024 * 1024
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        value = min(value, hard)
    resource.setrlimit(resource.RLIMIT_AS, (value, value))
    return baseline


class JobInput:
    """The child's stdin, a pipe from the parent: one JSON line for the job, then one for each
    exercise's cases, sent only when asked for (``cases_wanted``). Once the job is read, fd 0
    becomes /dev/null, so ``input()`` in a submitted cell ends at once as it did before."""

    def __init__(self):
        self.fd = os.dup(0)
        self._buffer = bytearray()

    def read_line(self):
        while b"\n" not in self._buffer:
            chunk = os.read(self.fd, 1 << 16)
            if not chunk:
                raise EOFError("the grader closed the child's input")
            self._buffer += chunk
        line, _, rest = bytes(self._buffer).partition(b"\n")
        self._buffer = bytearray(rest)
        return json.loads(line)

    def read_job(self) -> dict:
        job = self.read_line()
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        return job


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


def prepare_matplotlib(fontlist: dict | None) -> None:
    """Give matplotlib a writable config dir in the working dir, with the parent's font cache.

    Without it, a read-only home makes matplotlib rebuild its font cache on every run (seconds).
    """
    config_dir = os.path.join(os.getcwd(), ".matplotlib")
    os.makedirs(config_dir, exist_ok=True)
    os.environ["MPLCONFIGDIR"] = config_dir
    if fontlist and isinstance(fontlist.get("name"), str) and "/" not in fontlist["name"]:
        with open(os.path.join(config_dir, fontlist["name"]), "w", encoding="utf-8") as handle:
            handle.write(fontlist["text"])


def run_item(item: dict, namespace: dict, channel: Channel, job_input: JobInput) -> None:
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
            message=messages.missing_function(item["function"]),
            line=None,
        )
        channel.send(event="done", exercise=exercise)
        return
    channel.send(event="cases_wanted", exercise=exercise)
    cases = job_input.read_line()  # this exercise's hidden inputs exist from here ...
    for index, case in enumerate(cases):
        run_one_case(function, item, index, case, channel, filename, source)
    del cases  # ... to here
    channel.send(event="done", exercise=exercise)


def run_one_case(
    function, item: dict, index: int, case: dict, channel: Channel, filename: str, source: str
) -> None:
    """``run_case`` on one hidden case; its outcome (or whatever escaped it) sent as one event."""
    sent = {"exercise": item["exercise"], "case": index}
    try:
        call = CaseCall.from_names(
            case["args"], case["kwargs"], item.get("input_modules", []), item.get("forbidden", [])
        )
        outcome = run_case(function, call)
    except BaseException as error:  # noqa: BLE001 - sys.exit, an interrupt, a hostile value
        outcome = Raised.of(error)
    if isinstance(outcome, EncodedReturn):
        channel.send(event="result", **sent, output=outcome.output)
    elif isinstance(outcome, (UsedShortcut, ChangedInput)):  # the parent gives the exercise 0
        kind, what = (
            (FORBIDDEN_ERROR, outcome.name)
            if isinstance(outcome, UsedShortcut)
            else (CHANGED_INPUT_ERROR, outcome.argument)
        )
        channel.send(event="case_error", **sent, type=kind, message=what, line=None, code="")
    else:
        channel.send(
            event="case_error", **sent, **describe_exception(outcome.error, filename, source)
        )


def run_job(job: dict, channel: Channel, job_input: JobInput) -> None:
    """Limits, setup, the memory limit above what setup mapped, seccomp, then every item; ends the
    process (never returns)."""
    apply_limits(job["limits"])
    namespace: dict = {"__name__": "__main__", "__builtins__": __builtins__}
    try:
        exec(compile(job["setup"], "<setup cell>", "exec"), namespace)
    except BaseException as error:  # noqa: BLE001
        channel.send(event="setup_error", **describe_exception(error, "<setup cell>", job["setup"]))
        os._exit(3)
    # Before any submitted code: every forbidden callable of the job is marked for good, so the
    # submission never holds an unmarked one (not through a partial, a thread or a copied __code__).
    install_markers(sorted({name for item in job["items"] for name in item.get("forbidden", [])}))
    limit_memory_above_baseline(job["limits"].get("memory_mb"))
    seccomp_error = None
    from course_utils.grade import seccomp

    try:
        seccomp.install()
    except Exception as error:  # noqa: BLE001 - reported to the parent, which warns once
        seccomp_error = f"{type(error).__name__}: {error}"
    channel.send(event="ready", seccomp=seccomp_error is None, seccomp_error=seccomp_error)
    for item in job["items"]:
        run_item(item, namespace, channel, job_input)
    channel.send(event="finished")
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 - e.g. the learner's output hit the file-size limit
            pass
    # Skip interpreter shutdown: learner threads, atexit hooks or __del__ methods cannot hang it.
    os._exit(0)


def main(channel_fd: int) -> None:
    """Spawn mode: a fresh interpreter for one job read from stdin."""
    job_input = JobInput()
    job = job_input.read_job()
    prepare_matplotlib(job.get("matplotlib_fontlist"))
    run_job(job, Channel(channel_fd), job_input)


if __name__ == "__main__":
    main(int(sys.argv[1]))
