"""Your own attention in ``course-bench``: ``--method NAME=MODULE:FUNCTION``, checked before it is timed.

``course-bench --method mine=my_attention:tiled --methods naive tiled sdpa`` times the function
``tiled`` of the module ``my_attention`` beside the course's methods: the same cases, each in a
fresh process, the same table, CSV and plot. MODULE is a module Python can import from the current
folder (``my_attention``, ``package.module``) or the path of a ``.py`` file (``work/my_attention.py``).

The function is called as ``FUNCTION(q, k, v)`` with q, k, v of shape (batch, heads, n, d) and must
return the attention output (batch, heads, n, d). Where it has a ``causal`` parameter, causal
cases call ``FUNCTION(q, k, v, causal=True)``; where it has none, they are left out (and the
command says so). For the forward+backward mode it must be differentiable by autograd.

**Checked first.** Before anything is timed, :func:`check_in_fresh_process` runs the function once
in a fresh process on a small input (n = 100, not a multiple of any usual block) and compares its
output — and, when forward+backward is asked for, its gradients — with torch's SDPA computed in
float64. A function that cannot be imported, raises, returns the wrong shape or a wrong value
stops the command with a message saying which, and nothing is timed: a fast wrong answer is not a
result. The learner's code runs with the learner's own rights (it is their code, on their machine);
what it prints or raises is shown escaped, one line, never as terminal control sequences.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import inspect
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from course_utils.benchmark.bench_report import COURSE_METHODS

NAME_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,23}")
MODULE_PATTERN = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")
CHECK_LENGTH = 100  # the check's sequence length: not a multiple of any power-of-two block
# max |yours − SDPA in float64| allowed, by input dtype; gradients get 10 times as much
TOLERANCE = {"float64": 1e-8, "float32": 1e-4, "float16": 1e-2, "bfloat16": 5e-2}
_CHECK_MARKER = "LEARNER_CHECK "


class LearnerMethodError(ValueError):
    """A learner's method that cannot be timed: bad spec, import failure, or a wrong result."""


def shown(text: object, limit: int = 300) -> str:
    """Text from the learner's code, safe to print: control characters escaped, one line, cut."""
    text = str(text)
    escaped = "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)
    return escaped if len(escaped) <= limit else escaped[:limit] + "…"


@dataclass(frozen=True)
class LearnerMethod:
    """``NAME=MODULE:FUNCTION``, parsed; ``takes_causal`` is known once the check has run."""

    name: str
    module: str
    function: str
    takes_causal: bool = False

    @property
    def spec(self) -> str:
        return f"{self.module}:{self.function}"


def parse_method(text: str) -> LearnerMethod:
    """``NAME=MODULE:FUNCTION`` → a :class:`LearnerMethod`; a clear ``ArgumentTypeError`` otherwise."""
    form = "NAME=MODULE:FUNCTION, e.g. mine=my_attention:tiled_attention"
    name, equals, spec = text.partition("=")
    module, colon, function = spec.rpartition(":")
    if not (equals and colon and name and module and function):
        raise argparse.ArgumentTypeError(f"expected {form}, got {shown(text)!r}")
    if not NAME_PATTERN.fullmatch(name):
        raise argparse.ArgumentTypeError(
            f"NAME must be a letter then up to 23 letters, digits, - or _, got {shown(name)!r}"
        )
    if name in COURSE_METHODS:
        raise argparse.ArgumentTypeError(
            f"NAME {name!r} is one of the course's methods {COURSE_METHODS}; choose another"
        )
    if not function.isidentifier():
        raise argparse.ArgumentTypeError(
            f"FUNCTION must be a Python name, got {shown(function)!r} (in {form})"
        )
    if module.endswith(".py"):
        module = str(Path(module).resolve())  # the fresh processes may not share the folder
    elif not MODULE_PATTERN.fullmatch(module):
        raise argparse.ArgumentTypeError(
            f"MODULE must be a module name (my_attention, package.module) or a .py file, "
            f"got {shown(module)!r}"
        )
    return LearnerMethod(name, module, function)


def load_function(spec: str) -> Callable:
    """Import ``MODULE:FUNCTION`` (a module name or a .py path) and return the function."""
    module_name, _, function_name = spec.rpartition(":")
    try:
        if module_name.endswith(".py"):
            path = Path(module_name)
            if not path.is_file():
                raise LearnerMethodError(f"there is no file {shown(path)!r}")
            location = importlib.util.spec_from_file_location(f"learner_{path.stem}", path)
            module = importlib.util.module_from_spec(location)
            location.loader.exec_module(module)
        else:
            sys.path.insert(0, os.getcwd())  # a module in the folder the command runs in
            module = importlib.import_module(module_name)
    except LearnerMethodError:
        raise
    except Exception as error:  # the learner's module may raise anything while it is imported
        raise LearnerMethodError(
            f"cannot import {shown(module_name)!r}: {type(error).__name__}: {shown(error)}"
        ) from None
    function = getattr(module, function_name, None)
    if function is None:
        raise LearnerMethodError(f"{shown(module_name)!r} has no function {function_name!r}")
    if not callable(function):
        raise LearnerMethodError(
            f"{shown(module_name)}:{function_name} is a {type(function).__name__}, not a function"
        )
    return function


def takes_causal(function: Callable) -> bool:
    """True when ``function`` accepts ``causal=`` (a parameter of that name, or ``**kwargs``)."""
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(
        parameter.name == "causal" or parameter.kind is inspect.Parameter.VAR_KEYWORD
        for parameter in parameters
    )


def _differs_by(name: str, got, expected, tolerance: float, what: str) -> None:
    """Raise when max |got − expected| is above ``tolerance`` (or not a number: NaN, inf)."""
    error = (got.double() - expected).abs().max().item()
    if not error <= tolerance:
        raise LearnerMethodError(
            f"wrong {what}: max |{name} - SDPA in float64| = {error:.2e} > {tolerance:g}"
        )


def check_against_sdpa(
    name: str, spec: str, modes: Sequence[str], dim: int, dtype: str, device: str, heads: int = 2
) -> dict:
    """Run the learner's function once on (1, heads, 100, dim) inputs and compare it with SDPA
    (output; gradients too when ``"backward"`` is in ``modes``). Raises :class:`LearnerMethodError`."""
    import torch

    function = load_function(spec)
    causal_too = takes_causal(function)
    backward = "backward" in modes
    tolerance = TOLERANCE[dtype]
    generator = torch.Generator().manual_seed(0)
    shape = (1, heads, CHECK_LENGTH, dim)
    q, k, v, grad_out = (torch.randn(shape, generator=generator) for _ in range(4))
    sdpa = torch.nn.functional.scaled_dot_product_attention
    for causal in (False, True) if causal_too else (False,):
        setting = f"causal={causal}, q, k, v of shape {shape}, {dtype}"
        inputs = [t.to(device, getattr(torch, dtype), copy=True) for t in (q, k, v)]
        references = [t.to(device, torch.float64, copy=True) for t in (q, k, v)]
        for tensor in (*inputs, *references):
            tensor.requires_grad_(backward)
        expected = sdpa(*references, is_causal=causal)
        try:  # the learner's code may raise anything, forward or backward
            out = function(*inputs, causal=True) if causal else function(*inputs)
            if isinstance(out, torch.Tensor) and out.shape == shape and backward:
                out.backward(grad_out.to(device, out.dtype))
        except Exception as error:
            raise LearnerMethodError(
                f"raised {type(error).__name__}: {shown(error)} ({setting})"
            ) from None
        if not isinstance(out, torch.Tensor) or out.shape != shape:
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise LearnerMethodError(f"returned {got}, expected a tensor of shape {shape}")
        _differs_by(name, out.detach(), expected.detach(), tolerance, f"output ({setting})")
        if backward:
            expected.backward(grad_out.to(device, torch.float64))
            for tensor_name, mine, reference in zip("qkv", inputs, references, strict=True):
                if mine.grad is None:
                    raise LearnerMethodError(
                        f"no gradient reaches {tensor_name}: is the output detached from autograd?"
                    )
                what = f"gradient d{tensor_name} ({setting})"
                _differs_by(name, mine.grad, reference.grad, 10 * tolerance, what)
    return {"takes_causal": causal_too}


def check_in_fresh_process(
    method: LearnerMethod,
    modes: Sequence[str],
    dim: int,
    dtype: str,
    device: str,
    timeout_s: float = 300.0,
) -> LearnerMethod:
    """Check ``method`` against SDPA in a fresh process; the method with ``takes_causal`` filled in.

    Raises :class:`LearnerMethodError` saying what is wrong, and that nothing was timed."""
    settings = {"name": method.name, "spec": method.spec, "modes": list(modes)}
    settings |= {"dim": dim, "dtype": dtype, "device": device}
    command = [sys.executable, "-m", __name__, "--check", json.dumps(settings)]
    prefix = f"--method {method.name}={shown(method.spec)}"
    try:
        finished = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise LearnerMethodError(
            f"{prefix}: the check against SDPA did not finish in {timeout_s:.0f} s; nothing was timed"
        ) from None
    for line in reversed(finished.stdout.splitlines()):
        if line.startswith(_CHECK_MARKER):
            result = json.loads(line[len(_CHECK_MARKER) :])
            if "problem" in result:
                raise LearnerMethodError(f"{prefix}: {result['problem']}; nothing was timed")
            return LearnerMethod(
                method.name, method.module, method.function, result["takes_causal"]
            )
    tail = (finished.stderr or finished.stdout).strip().splitlines()[-1:] or ["no output"]
    raise LearnerMethodError(
        f"{prefix}: the check's process exited {finished.returncode}: {shown(tail[0])}; "
        "nothing was timed"
    )


def _check_main(payload: str) -> int:
    """The fresh process of :func:`check_in_fresh_process`: one JSON line after the marker."""
    try:
        result = check_against_sdpa(**json.loads(payload))
    except LearnerMethodError as error:
        result = {"problem": str(error)}
    print(_CHECK_MARKER + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":  # python -m course_utils.benchmark.learner_method --check JSON
    if len(sys.argv) != 3 or sys.argv[1] != "--check":
        sys.exit("this checks a learner's method for course-bench; run `course-bench --method ...`")
    sys.exit(_check_main(sys.argv[2]))
