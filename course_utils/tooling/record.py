"""Execute solution notebooks in place, storing their outputs (what strict nbval compares against).

    python -m course_utils.tooling.record solutions/01_soft_weights.ipynb [more.ipynb ...]

Runs on the CPU, in the current environment's kernel, with the portable kernel set and two threads
(``kernel_sets.RECORDING``): ``make test`` re-runs them with the machine's own kernels and one thread,
so every strict nbval run checks that the stored outputs do not depend on the floating-point path.
Each notebook is stamped with how it was recorded (``metadata.course_recording``); a test checks the
stamp, so a notebook saved from JupyterLab with outputs from another path cannot slip in.

Record on an otherwise idle machine: two threads on busy cores wait for each other (notebook 02 took
100 s idle, 17 minutes beside four other busy processes on two cores).

The notebooks run with your own rights, without a sandbox: a notebook in a folder laid out like a class's
submissions (``SUBMISSIONS/<student>/NN_name.ipynb``) is refused unless ``--trust-this-code`` is given;
grade submissions with ``course-grade`` (``untrusted``).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from course_utils.helpers.kernel_sets import RECORDING, environment
from course_utils.tooling.untrusted import (
    UntrustedFolder,
    parser_without_sandbox,
    refuse_submissions,
)

RECORDING_METADATA = "course_recording"


def record(path: Path, timeout: int = 600) -> float:
    """Execute ``path`` top to bottom, write the outputs back, return the seconds it took."""
    notebook = nbformat.read(path, as_version=4)
    recording_env = environment(RECORDING["kernel_set"], RECORDING["threads"])  # read by the kernel
    recording_env["COURSE_DEVICE"] = "cpu"
    recording_env.pop("COURSE_REQUIRE_CUDA", None)
    os.environ.clear()
    os.environ.update(recording_env)
    client = NotebookClient(
        notebook,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    )
    start = time.perf_counter()
    client.execute()
    elapsed = time.perf_counter() - start
    for cell in notebook.cells:
        cell.metadata.pop("execution", None)
    notebook.metadata[RECORDING_METADATA] = dict(RECORDING)
    nbformat.write(notebook, path)
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = parser_without_sandbox("python -m course_utils.tooling.record", __doc__.split("\n")[0])
    parser.add_argument("notebooks", nargs="+", type=Path, metavar="NOTEBOOK")
    parser.add_argument("--timeout", type=int, default=600, help="seconds per cell")
    args = parser.parse_args(argv)
    for path in args.notebooks:  # every one checked before any runs
        if not path.is_file():
            print(f"no such notebook: {path}", file=sys.stderr)
            return 2
        if not args.trust_this_code:
            try:
                refuse_submissions(path, "NOTEBOOK", parser.prog)
            except UntrustedFolder as error:
                print(f"{parser.prog}: error: {error}", file=sys.stderr)
                return 2
    for path in args.notebooks:
        print(f"recorded {path} in {record(path, args.timeout):.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
