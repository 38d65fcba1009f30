"""Every sentence a learner reads about a failed case, written once for ``check()`` and the grader.

``check()`` (in the notebook) and the grader (in its report) say the same thing about the same
mistake; only what each knows differs: ``check()`` sees the exception itself, the grader the fields
its sandboxed child reported.
"""

from __future__ import annotations

NOT_IMPLEMENTED = "not implemented yet: replace `raise NotImplementedError` with your code"


def not_implemented(hint: str = "") -> str:
    """The stub still raises NotImplementedError (``hint`` is the stub's own message, if any)."""
    return f"{NOT_IMPLEMENTED} (hint: {hint})" if hint else NOT_IMPLEMENTED


def forbidden_shortcut(used: str, function_name: str) -> str:
    """The learner's code called ``used``, which does the exercise for them."""
    return (
        f"calls {used}, which does this exercise for you: write {function_name} from basic tensor "
        "operations (a forbidden shortcut scores 0)"
    )


def changed_input(argument: str) -> str:
    """The learner's function changed one of its inputs in place."""
    return (
        f"changes its input `{argument}` in place, which overwrites the caller's tensor (and raises "
        "on a tensor that requires grad): compute into a new tensor instead, e.g. `x = x * e`, "
        "not `x *= e` or `x[...] = …`"
    )


def out_of_memory(memory_mb: int, error: str, while_running_cell: bool = False) -> str:
    """The grader's memory limit was hit (``error`` describes the exception)."""
    what = "running the cell ran" if while_running_cell else "ran"
    return (
        f"{what} out of memory (limit {memory_mb} MB above what the setup mapped; "
        f"instructors: --memory-mb): {error}"
    )


def wrong_signature(function_name: str, signature: str, expected: str) -> str:
    """The learner's function cannot be called with the exercise's arguments."""
    return f"{function_name}{signature} cannot be called as {expected}: keep the signature given in the exercise"


def not_a_function(expected: str, got: str) -> str:
    return f"expected a function to call as {expected}, got {got}"


def missing_function(function_name: str) -> str:
    return f"the cell does not define a function named `{function_name}`"


MISSING_FUNCTION_ADVICE = " (keep the name given in the exercise)"


def raised(error: str, where: str = "", mistake: str | None = None) -> str:
    """``error`` is "Type" or "Type: message"; ``where`` the line of the learner's code, if known."""
    text = f"raised {error}{where}"
    return f"{text}; {mistake}" if mistake else text


def judged(problem: str, mistake: str | None = None) -> str:
    """A returned value that is wrong: the judge's problem, and the named mistake it matches."""
    return f"{problem}; {mistake}" if mistake else problem


def could_not_be_judged(error: BaseException) -> str:
    return f"could not be judged ({type(error).__name__})"


NO_RESULT = "no result came back"


def cases_listed(names: list[str], limit: int = 3) -> str:
    """'a; b; c; …': the first ``limit`` failing cases by name."""
    return "; ".join(names[:limit]) + ("; …" if len(names) > limit else "")
