"""The claims report: every asserted figure of the course, under every kernel set, thread count and seed.

    python -m course_utils.tooling.claims_report                       # every notebook, the whole grid
    python -m course_utils.tooling.claims_report solutions/02_*.ipynb --kernel-sets default native --seeds 0 1

A claim in a notebook is an ``assert``. This command runs each solution notebook once per kernel
set (course_utils.helpers.kernel_sets) × thread count × seed, with every ``assert`` of the notebook
rewritten to record its figures instead of stopping the run:

* ``assert a >= b`` (and >, <=, <, chains, ``x and y``, ``all(a >= b for …)``) records both sides;
  its margin is how far the claim is from failing (a − b for ≥, b − a for ≤), in the claim's units;
* any other ``assert`` records whether it held.

The seed is varied with ``COURSE_SEED_OFFSET`` (runtime.seed_everything adds it to every seed a
notebook passes); figures a notebook draws from a seed it passes to a library function directly
stay fixed. The table lists each claim once: the runs it held in, its smallest margin, and the
figure and bound of that run. Decide a bound from this table, then keep a safe margin.
"""

from __future__ import annotations

import argparse
import ast
import builtins
import itertools
import json
import math
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from course_utils.helpers.kernel_sets import KERNEL_SETS, environment

CLAIMS_LOG = "COURSE_CLAIMS_LOG"  # where a notebook's kernel appends one JSON line per claim
_ORDERED = {ast.Gt: ">", ast.GtE: ">=", ast.Lt: "<", ast.LtE: "<="}


# --------------------------------------------------------------------------------------------------
# inside the notebook's kernel: record a claim instead of asserting it


def _number(value) -> float | None:
    """``value`` as a float when it is a real number (int, float, NumPy or 0-d torch), else None."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError, RuntimeError):
        return None
    return number if math.isfinite(number) else None


def margin(left, op: str, right) -> float | None:
    """How far ``left op right`` is from failing: positive while it holds (None if not numeric)."""
    left_number, right_number = _number(left), _number(right)
    if left_number is None or right_number is None:
        return None
    return left_number - right_number if op in (">", ">=") else right_number - left_number


def _write(record: dict) -> None:
    path = os.environ.get(CLAIMS_LOG)
    if path:
        with open(path, "a", encoding="utf-8") as log:
            log.write(json.dumps(record) + "\n")


def record_compare(key: str, source: str, left, op: str, right, held: bool | None = None) -> None:
    """One ordered comparison of an assert: its figures, whether it held, its margin."""
    _write(
        {
            "key": key,
            "source": source,
            "held": _holds(left, op, right) if held is None else held,
            "left": _number(left),
            "op": op,
            "right": _number(right),
            "margin": margin(left, op, right),
        }
    )


def record_all(key: str, source: str, pairs: Iterable[tuple], op: str) -> None:
    """``all(a op b for …)``: the pair closest to failing stands for the claim."""
    pairs = list(pairs)
    if not pairs:
        return record_truth(key, source, True)
    margins = [margin(left, op, right) for left, right in pairs]
    worst = min(range(len(pairs)), key=lambda i: math.inf if margins[i] is None else margins[i])
    held = all(_holds(left, op, right) for left, right in pairs)
    record_compare(key, source, pairs[worst][0], op, pairs[worst][1], held=held)


def _holds(left, op, right) -> bool:
    return bool(
        {">": left > right, ">=": left >= right, "<": left < right, "<=": left <= right}[op]
    )


def record_truth(key: str, source: str, value) -> None:
    """Any other assert: only whether it held."""
    _write({"key": key, "source": source, "held": bool(value), "margin": None})


def install() -> None:
    """Make the recorders visible to every cell (and to functions the cells define)."""
    builtins.__course_claim_compare__ = record_compare
    builtins.__course_claim_all__ = record_all
    builtins.__course_claim_truth__ = record_truth


# --------------------------------------------------------------------------------------------------
# rewriting a cell's asserts


class _AssertRecorder(ast.NodeTransformer):
    """Replaces each ``assert`` of a cell by calls that record it (see the module docstring)."""

    def __init__(self, source: str, cell_key: str):
        self.source, self.cell_key = source, cell_key

    def _call(self, name: str, *arguments: ast.expr) -> ast.stmt:
        function = ast.Name(id=name, ctx=ast.Load())
        return ast.Expr(ast.Call(func=function, args=list(arguments), keywords=[]))

    def _claims(self, test: ast.expr, key: str) -> list[ast.stmt]:
        text = ast.Constant(ast.get_source_segment(self.source, test) or ast.unparse(test))
        label = ast.Constant(key)
        if isinstance(test, ast.BoolOp) and isinstance(test.op, ast.And):
            return [
                statement
                for index, part in enumerate(test.values)
                for statement in self._claims(part, f"{key}.{index}")
            ]
        if isinstance(test, ast.Compare) and all(type(op) in _ORDERED for op in test.ops):
            operands = [test.left, *test.comparators]
            return [
                self._call(
                    "__course_claim_compare__",
                    ast.Constant(f"{key}.{index}" if len(test.ops) > 1 else key),
                    text,
                    operands[index],
                    ast.Constant(_ORDERED[type(op)]),
                    operands[index + 1],
                )
                for index, op in enumerate(test.ops)
            ]
        if (
            isinstance(test, ast.Call)
            and isinstance(test.func, ast.Name)
            and test.func.id == "all"
            and len(test.args) == 1
            and isinstance(test.args[0], ast.GeneratorExp)
            and isinstance(test.args[0].elt, ast.Compare)
            and len(test.args[0].elt.ops) == 1
            and type(test.args[0].elt.ops[0]) in _ORDERED
        ):
            generator = test.args[0]
            pair = ast.Tuple([generator.elt.left, generator.elt.comparators[0]], ast.Load())
            pairs = ast.ListComp(elt=pair, generators=generator.generators)
            op = ast.Constant(_ORDERED[type(generator.elt.ops[0])])
            return [self._call("__course_claim_all__", label, text, pairs, op)]
        return [self._call("__course_claim_truth__", label, text, test)]

    def visit_Assert(self, node: ast.Assert):
        return [
            ast.copy_location(statement, node)
            for statement in self._claims(node.test, f"{self.cell_key}:{node.lineno}")
        ]


def rewrite_asserts(source: str, cell_key: str) -> str:
    """``source`` with every assert recording instead of raising; unchanged if it does not parse."""
    try:
        tree = ast.parse(source)
    except SyntaxError:  # IPython syntax (magics): no claims to rewrite
        return source
    if not any(isinstance(node, ast.Assert) for node in ast.walk(tree)):
        return source
    tree = ast.fix_missing_locations(_AssertRecorder(source, cell_key).visit(tree))
    return ast.unparse(tree)


# --------------------------------------------------------------------------------------------------
# one run: a notebook under one kernel set, thread count and seed


def run_notebook(path: Path, log: Path, timeout: int = 900) -> str | None:
    """Execute ``path`` with its asserts recording into ``log``; return the error, if any."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    notebook = nbformat.read(path, as_version=4)
    code_index = 0
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.source = rewrite_asserts(cell.source, f"{path.stem}#{code_index}")
            code_index += 1
    notebook.cells.insert(
        0,
        nbformat.v4.new_code_cell(
            "from course_utils.tooling.claims_report import install\ninstall()"
        ),
    )
    os.environ[CLAIMS_LOG] = str(log)
    client = NotebookClient(
        notebook,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    )
    try:
        client.execute()
    except CellExecutionError as error:
        last_line = str(error).strip().splitlines()[-1]
        return re.sub(r"\x1b\[[0-9;]*m", "", last_line)[:300]  # without the traceback's colours
    return None


@dataclass(frozen=True)
class Run:
    notebook: Path
    kernel_set: str
    threads: int
    seed: int

    def label(self) -> str:
        return f"{self.kernel_set}/{self.threads}t/seed+{self.seed}"


def execute(
    run: Run, folder: Path, retries: int = 1, cell_timeout: int = 900
) -> tuple[Run, list[dict], str | None]:
    """Run one notebook in a fresh process (kernel variables are read once, at import).

    Asserts never stop a run here, so a run that stops met an error or a lost kernel (nbclient
    sometimes waits forever on a kernel that has gone idle): it is run again, ``retries`` times,
    from the start, and the error says how many tries it took.
    """
    for _ in range(retries + 1):
        run_, records, error = _execute_once(run, folder, cell_timeout)
        if error is None:
            return run_, records, None
    return run_, records, f"{error} (after {retries + 1} tries)"


def _execute_once(run: Run, folder: Path, cell_timeout: int) -> tuple[Run, list[dict], str | None]:
    log = folder / f"{run.notebook.stem}-{run.kernel_set}-{run.threads}-{run.seed}.jsonl"
    log.unlink(missing_ok=True)
    env = environment(run.kernel_set, run.threads)
    env["COURSE_SEED_OFFSET"] = str(run.seed)
    env["COURSE_DEVICE"] = "cpu"
    env.pop("COURSE_REQUIRE_CUDA", None)
    finished = subprocess.run(
        [
            sys.executable,
            "-m",
            "course_utils.tooling.claims_report",
            "--one",
            str(run.notebook),
            str(log),
            "--cell-timeout",
            str(cell_timeout),
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    error = finished.stdout.strip() or None
    if finished.returncode != 0:
        error = (finished.stderr.strip().splitlines() or ["exit status"])[-1]
    records = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return run, records, error


# --------------------------------------------------------------------------------------------------
# the table


def summarise(results: list[tuple[Run, list[dict], str | None]]) -> list[dict]:
    """One row per claim: runs held / seen, smallest margin, the figure and bound of that run."""
    rows: dict[str, dict] = {}
    for run, records, _ in results:
        for record in records:
            row = rows.setdefault(
                record["key"],
                {"key": record["key"], "source": record["source"], "held": 0, "runs": set()},
            )
            row["runs"].add(run.label())
            row["held"] += record["held"]
            row.setdefault("seen", 0)
            row["seen"] += 1
            if record["margin"] is not None and (
                "margin" not in row or record["margin"] < row["margin"]
            ):
                row.update(
                    margin=record["margin"],
                    left=record["left"],
                    op=record["op"],
                    right=record["right"],
                    worst_run=run.label(),
                )
    for row in rows.values():
        row["runs"] = len(row["runs"])
    return sorted(rows.values(), key=lambda row: _natural(row["key"]))


def _natural(key: str) -> tuple:
    notebook, _, rest = key.partition("#")
    return (
        notebook,
        *(int(part) if part.isdigit() else 0 for part in rest.replace(":", ".").split(".")),
    )


def format_table(rows: list[dict]) -> str:
    lines = [
        f"{'claim':<28} {'held':>9}  {'smallest margin':>15}  {'figure':>10} op {'bound':<10} source"
    ]
    for row in rows:
        held = f"{row['held']}/{row['seen']}"
        if "margin" in row:
            figures = (
                f"{row['margin']:>15.4g}  {row['left']:>10.4g} {row['op']:<2} {row['right']:<10.4g}"
            )
        else:
            figures = f"{'(not a figure)':>15}  {'':>10}    {'':<10}"
        source = " ".join(row["source"].split())
        lines.append(f"{row['key']:<28} {held:>9}  {figures} {source[:70]}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m course_utils.tooling.claims_report", description=__doc__.split("\n")[0]
    )
    parser.add_argument("notebooks", nargs="*", type=Path)
    parser.add_argument("--kernel-sets", nargs="+", default=list(KERNEL_SETS), choices=KERNEL_SETS)
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="seed offsets")
    parser.add_argument("--jobs", type=int, default=2, help="notebooks run at once")
    parser.add_argument("--cell-timeout", type=int, default=900, help="seconds per cell")
    parser.add_argument("--retries", type=int, default=1, help="re-runs of a run that stopped")
    parser.add_argument("--out", type=Path, help="write the rows (and every run's error) as JSON")
    parser.add_argument("--one", nargs=2, metavar=("NOTEBOOK", "LOG"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        error = run_notebook(Path(args.one[0]), Path(args.one[1]), args.cell_timeout)
        if error:
            print(error)
        return 0
    notebooks = args.notebooks or sorted(Path("solutions").glob("[0-9][0-9]_*.ipynb"))
    missing = [str(path) for path in notebooks if not path.is_file()]
    if missing:
        print(f"no such notebook: {', '.join(missing)}", file=sys.stderr)
        return 2
    runs = [
        Run(path.resolve(), kernel_set, threads, seed)
        for path, kernel_set, threads, seed in itertools.product(
            notebooks, args.kernel_sets, args.threads, args.seeds
        )
    ]
    print(
        f"{len(runs)} runs: {len(notebooks)} notebooks × {args.kernel_sets} × threads "
        f"{args.threads} × seed offsets {args.seeds}",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as folder, ThreadPoolExecutor(args.jobs) as pool:
        results = []

        def one(run: Run):
            return execute(run, Path(folder), args.retries, args.cell_timeout)

        for run, records, error in pool.map(one, runs):
            status = f"stopped: {error}" if error else "ran to the end"
            print(
                f"  {run.notebook.stem} {run.label()}: {len(records)} claims, {status}", flush=True
            )
            results.append((run, records, error))
    rows = summarise(results)
    print(format_table(rows))
    failed = [row for row in rows if row["held"] < row["seen"]]
    stopped = [(run.notebook.stem, run.label(), error) for run, _, error in results if error]
    print(
        f"{len(rows)} claims; {len(failed)} failed in some run; {len(stopped)} runs stopped early"
    )
    if args.out:
        args.out.write_text(json.dumps({"rows": rows, "stopped": stopped}, indent=1))
    return 1 if failed or stopped else 0


if __name__ == "__main__":
    sys.exit(main())
