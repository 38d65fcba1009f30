"""Hidden tests: one module per notebook, found automatically.

A module here declares which notebook it grades and builds its cases in the PARENT process::

    NOTEBOOK = "01_soft_weights"

    def build_cases() -> dict[str, list[Case]]:
        return {"ex1_1_stable_softmax": [Case("random (4, 7), dim=-1", (scores, -1), softmax(scores, -1)), ...]}

Only ``Case.args`` / ``Case.kwargs`` (tensors, numbers, bools, None, tuples) are sent to the
sandboxed child; ``Case.expected`` is computed here with the course_utils reference and never
leaves the parent. ``Case.judge(actual, expected)`` runs in the parent on the decoded output and
returns ``None`` (pass) or a message for the learner that names the problem (shape, NaN, values
differ, wrong type) without quoting expected values. Each case is worth ``points / len(cases)``.

Adding notebook NN's hidden tests = adding one module here with ``NOTEBOOK`` and ``build_cases``;
every graded exercise of the released notebook must have at least one case.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np

from course_utils.grade.codec import Array, Opaque, TooLarge

Judge = Callable[[Any, Any], "str | None"]


def describe(value: Any) -> str:
    """What a returned value is, in words, without its contents."""
    if isinstance(value, Array):
        kind = "tensor" if value.library == "torch" else "NumPy array"
        return f"a {value.dtype} {kind} of shape {value.shape}"
    if isinstance(value, tuple):
        return f"a tuple/list of {len(value)} items"
    if value is None:
        return "None (did you forget to `return` it?)"
    if isinstance(value, bool):
        return "a bool"
    if isinstance(value, (int, float)):
        return "a Python number"
    if isinstance(value, TooLarge):
        return f"a {value.type_name} of shape {value.shape} (far too large)"
    if isinstance(value, Opaque):
        return f"a {value.type_name}"
    return type(value).__name__


def _as_numpy(expected: Any) -> np.ndarray:
    if hasattr(expected, "detach"):  # a torch tensor
        return expected.detach().cpu().numpy()
    return np.asarray(expected)


def compare_array(
    name: str, actual: Any, expected: Any, atol: float, rtol: float, dtype: str | None = None
) -> str | None:
    """None when ``actual`` is a tensor equal to ``expected`` within tolerance, else why not."""
    expected_values = _as_numpy(expected)
    expected_shape = tuple(expected_values.shape)
    if isinstance(actual, TooLarge):
        return f"{name}: got a tensor of shape {actual.shape}, far too large (expected shape {expected_shape})"
    if not isinstance(actual, Array):
        return f"{name}: should be a torch.Tensor, got {describe(actual)}"
    if actual.library != "torch":
        return f"{name}: should be a torch.Tensor, got a NumPy array"
    if actual.shape != expected_shape:
        return f"{name}: shape {actual.shape}, expected {expected_shape}"
    if dtype is not None and actual.dtype != dtype:
        return f"{name}: dtype {actual.dtype}, expected {dtype}"
    count = expected_values.size
    if expected_values.dtype == np.bool_:
        if actual.dtype != "bool":
            return f"{name}: should be a bool tensor (True = may attend), got dtype {actual.dtype}"
        wrong = int((actual.values != expected_values).sum())
        return None if wrong == 0 else f"{name}: wrong in {wrong} of {count} entries"
    values = actual.values.astype(np.float64)
    reference = expected_values.astype(np.float64)
    nan_where_finite = int((np.isnan(values) & ~np.isnan(reference)).sum())
    if nan_where_finite:
        return (
            f"{name}: NaN in {nan_where_finite} of {count} entries "
            "(exp() of a large number overflowing, 0/0, or log(0)?)"
        )
    inf_where_finite = int((np.isinf(values) & np.isfinite(reference)).sum())
    if inf_where_finite:
        return f"{name}: ±inf in {inf_where_finite} of {count} entries (overflow?)"
    close = np.isclose(values, reference, atol=atol, rtol=rtol, equal_nan=True)
    wrong = int(count - close.sum())
    if wrong:
        return (
            f"{name}: {wrong} of {count} values differ from the correct ones "
            f"(beyond atol={atol:g}, rtol={rtol:g})"
        )
    return None


def close(*names: str, atol: float = 1e-5, rtol: float = 1e-5, dtype: str | None = None) -> Judge:
    """A judge for one tensor (``close("weights")``) or a tuple of them (``close("output", "weights")``)."""
    if not names:
        names = ("the result",)

    def judge(actual: Any, expected: Any) -> str | None:
        if len(names) == 1:
            return compare_array(names[0], actual, expected, atol, rtol, dtype)
        if not isinstance(actual, tuple) or len(actual) != len(names):
            wanted = ", ".join(names)
            return f"should return a tuple ({wanted}), got {describe(actual)}"
        for name, actual_item, expected_item in zip(names, actual, expected, strict=True):
            problem = compare_array(name, actual_item, expected_item, atol, rtol, dtype)
            if problem:
                return problem
        return None

    return judge


@dataclass(frozen=True)
class Case:
    """One hidden test: inputs sent to the child, expected value kept in the parent."""

    name: str  # shown to the learner: describes the inputs, never the answer
    args: tuple
    expected: Any
    judge: Judge = field(default_factory=close)
    kwargs: dict = field(default_factory=dict)


def discover() -> dict[str, ModuleType]:
    """Every hidden-test module in this package, keyed by the notebook it grades (``NN_name``)."""
    modules: dict[str, ModuleType] = {}
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        notebook = getattr(module, "NOTEBOOK", None)
        if not isinstance(notebook, str) or not callable(getattr(module, "build_cases", None)):
            raise TypeError(
                f"hidden-test module {module.__name__} needs NOTEBOOK = 'NN_name' and build_cases()"
            )
        if notebook in modules:
            raise ValueError(
                f"two hidden-test modules grade {notebook}: {modules[notebook].__name__}, {module.__name__}"
            )
        modules[notebook] = module
    return modules


def naming_mistakes(judge: Judge, mistakes: list[tuple[Any, str]]) -> Judge:
    """``judge``, and when it fails, the explanation of the first mistake whose result it matches.

    ``mistakes`` pairs what a classic mistake returns for the case's inputs with its explanation;
    they stay in the parent like the expected value.
    """

    def judged(actual: Any, expected: Any) -> str | None:
        problem = judge(actual, expected)
        if problem is None:
            return None
        for mistaken, explanation in mistakes:
            if judge(actual, mistaken) is None:
                return f"{problem}; it matches a classic mistake: {explanation}"
        return problem

    return judged
