"""Judging one returned value against the expected one, in words a learner can act on.

The same judges serve ``check()`` in the notebook and ``course-grade``: both hand them the learner's
return value as it comes out of the sandbox codec (``course_utils.feedback.codec``: an ``Array`` for a
tensor, a tuple for a tuple, ``Opaque``/``TooLarge`` for what cannot cross), and the expected value
computed with the course's reference. A judge returns ``None`` when the value is right, otherwise one
sentence naming what is wrong (shape, dtype, NaN, how many values differ) without quoting the answer.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from course_utils.feedback.codec import Array, Opaque, TooLarge

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
    if isinstance(value, str):
        return "a str"
    if isinstance(value, TooLarge):
        return f"a {value.type_name} of shape {value.shape} (far too large)"
    if isinstance(value, Opaque):
        return f"a {value.type_name}"
    return type(value).__name__


def _as_numpy(expected: Any) -> np.ndarray:
    if isinstance(expected, Array):
        return expected.values
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
    close_entries = np.isclose(values, reference, atol=atol, rtol=rtol, equal_nan=True)
    wrong = int(count - close_entries.sum())
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


def equal(name: str = "the result") -> Judge:
    """A judge for a plain value (a str label, a number, a bool) that must equal the expected one."""

    def judge(actual: Any, expected: Any) -> str | None:
        if type(actual) is not type(expected):
            return f"{name}: should be a {type(expected).__name__}, got {describe(actual)}"
        return None if actual == expected else f"{name}: {actual!r:.40} is not the right answer"

    return judge


def number(name: str = "the result", rtol: float = 1e-9) -> Judge:
    """A judge for a real number (int or float) that must equal the expected one to ``rtol``."""

    def judge(actual: Any, expected: Any) -> str | None:
        if isinstance(actual, bool) or not isinstance(actual, int | float):
            return f"{name}: should be a number (a Python float), got {describe(actual)}"
        if math.isclose(actual, expected, rel_tol=rtol, abs_tol=0.0):
            return None
        return f"{name}: {actual:.6g} is not the right value"

    return judge


def one_of(labels: tuple[str, ...], wrong: str) -> Judge:
    """A judge for a label out of ``labels`` (e.g. a tile kind); ``wrong`` explains a wrong one."""
    listed = ", ".join(repr(label) for label in labels)

    def judge(actual: Any, expected: Any) -> str | None:
        if not isinstance(actual, str):
            return f"should return one of {listed}, got {describe(actual)}"
        if actual not in labels:
            return f"returned a string other than {listed}"
        return None if actual == expected else wrong

    return judge
