"""Forbidden shortcuts are noticed by whatever route the learner's code reaches them, and idiomatic
code (decorators, ``@torch.no_grad()``, helpers, partials of the learner's own functions) never is.

Each route is tried twice: in this process, the way ``check()`` watches one case (markers installed for
the case, removed after), and in a fresh interpreter that first installs the markers for good, the way
the grader's child does after its setup, before any submitted code (so a function's ``__code__`` copied
or a built-in bound by the submission are already the marked ones).
"""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
import textwrap

import pytest
import torch

from course_utils.feedback import codec
from course_utils.feedback.run import CaseCall, EncodedReturn, UsedShortcut, run_case
from course_utils.feedback.shortcuts import SPEC_PACKAGE

SOFTMAX_RULES = (
    "torch.softmax",
    "torch.Tensor.softmax",
    "torch.nn.functional.softmax",
    "course_utils.softmax.softmax",
    SPEC_PACKAGE,
)
GREEDY = (
    "course_utils.transformer.Seq2SeqTransformer.greedy_decode"  # @torch.no_grad() in the library
)

# Each route: the learner's code (defining ``answer(scores)``), and the forbidden name it must reach.
ROUTES = {
    "a direct call": ("def answer(x):\n    return torch.softmax(x, -1)", "torch.softmax"),
    "a tensor method": ("def answer(x):\n    return x.softmax(-1)", "torch.Tensor.softmax"),
    "the reference": (
        "import course_utils.softmax as S\ndef answer(x):\n    return S.softmax(x, -1)",
        "course_utils.softmax.softmax",
    ),
    "a thread": (
        """
        import threading
        def answer(x):
            out = {}
            worker = threading.Thread(target=lambda: out.setdefault("y", torch.softmax(x, -1)))
            worker.start()
            worker.join()
            return out["y"]
        """,
        "torch.softmax",
    ),
    "a partial of a built-in": (
        "import functools\nP = functools.partial(torch.softmax, dim=-1)\n"
        "def answer(x):\n    return P(x)",
        "torch.softmax",
    ),
    "torch.compile": (
        "def answer(x):\n"
        "    return torch.compile(lambda y: torch.softmax(y, -1), backend='eager')(x)",
        "torch.softmax",
    ),
    "a copy of the reference's code": (
        """
        import types
        import course_utils.softmax as S
        COPY = types.FunctionType(S.softmax.__code__.replace(co_name="mine"), S.softmax.__globals__)
        def answer(x):
            return COPY(x, -1)
        """,
        "course_utils.softmax.softmax",
    ),
    "a helper compiled with a course_utils file name": (
        """
        import course_utils.softmax as S
        exec(compile("def helper(x):\\n    return S.softmax(x, -1)\\n", S.__file__, "exec"))
        def answer(x):
            return helper(x)
        """,
        "course_utils.softmax.softmax",
    ),
    "a list subclass the codec iterates": (
        """
        import course_utils.softmax as S
        class Later(list):
            def __iter__(self):
                return iter([S.softmax(self.scores, -1)])
        def answer(x):
            later = Later()
            later.scores = x
            return later
        """,
        "course_utils.softmax.softmax",
    ),
    "a spec helper": (
        """
        from course_utils.exercises import soft_weights
        def answer(x):
            shifted = x - x.amax(-1, keepdim=True)
            return soft_weights._exp_without_shift.returns(shifted, -1)
        """,
        "course_utils.exercises.soft_weights._exp_without_shift",
    ),
    "__wrapped__ of a decorated library method": (
        """
        from course_utils.transformer import Seq2SeqTransformer
        def answer(x):
            try:
                Seq2SeqTransformer.greedy_decode.__wrapped__(None, x, 3)
            except Exception:
                pass
            return x
        """,
        GREEDY,
    ),
}
# Bound by an earlier cell: in the notebook that cell ran before check() installed its markers, so
# only the grader, which marks everything before the first submitted cell, sees these two
# (docs/grading.md, "Forbidden shortcuts": check() is the learner's preview, the grade is the rule).
BOUND_BEFORE_THE_CHECK = ("a partial of a built-in", "a copy of the reference's code")
# Idiomatic code that must never count.
HONEST = {
    "a @torch.no_grad() helper": """
        @torch.no_grad()
        def normalise(e):
            return e / e.sum(-1, keepdim=True)
        def answer(x):
            return normalise((x - x.amax(-1, keepdim=True)).exp())
        """,
    "a decorator of the learner's own": """
        import functools
        def logged(function):
            @functools.wraps(function)
            def wrapper(*args, **kwargs):
                return function(*args, **kwargs)
            return wrapper
        @logged
        def answer(x):
            e = (x - x.amax(-1, keepdim=True)).exp()
            return e / e.sum(-1, keepdim=True)
        """,
    "a partial of the learner's own function": """
        import functools
        def exp_normalise(x, dim):
            e = (x - x.amax(dim, keepdim=True)).exp()
            return e / e.sum(dim, keepdim=True)
        answer = functools.partial(exp_normalise, dim=-1)
        """,
    "an allowed library function that uses softmax inside": """
        from course_utils.softmax import masked_softmax
        def answer(x):
            return masked_softmax(x, torch.ones_like(x, dtype=torch.bool))
        """,
}
RULES = (*SOFTMAX_RULES, GREEDY)


def _learner_function(source: str):
    namespace = {"__name__": "__main__", "torch": torch}
    exec(compile(textwrap.dedent(source), "<learner cell>", "exec"), namespace)
    return namespace["answer"]


def _case() -> CaseCall:
    return CaseCall((codec.encode(torch.randn(3, 4)),), {}, (), RULES)


@pytest.mark.parametrize(
    "route", [route for route in ROUTES if route not in BOUND_BEFORE_THE_CHECK]
)
def test_check_notices_each_route(route):
    source, name = ROUTES[route]
    outcome = run_case(_learner_function(source), _case())
    assert outcome == UsedShortcut(name), outcome


@pytest.mark.parametrize("honest", list(HONEST))
def test_idiomatic_code_is_never_a_shortcut(honest):
    outcome = run_case(_learner_function(HONEST[honest]), _case())
    assert isinstance(outcome, EncodedReturn), outcome


def test_markers_leave_the_library_as_it_was():
    import course_utils.softmax as S

    before = (torch.softmax, S.softmax.__code__, inspect.signature(S.softmax), "softmax")
    run_case(_learner_function(ROUTES["a direct call"][0]), _case())
    assert (torch.softmax, S.softmax.__code__, inspect.signature(S.softmax)) == before[:3]
    assert "softmax" not in vars(torch.Tensor)  # the tensor method is TensorBase's again


CHILD_ORDER = """
import json, sys, textwrap, torch
from course_utils.feedback import codec
from course_utils.feedback.run import CaseCall, run_case
from course_utils.feedback.shortcuts import install_markers
rules, routes = json.loads(sys.stdin.read())
install_markers(rules)  # as the grader's child: after its setup, before any submitted code
found = {}
for route, source in routes.items():
    namespace = {"__name__": "__main__", "torch": torch}
    exec(compile(textwrap.dedent(source), "<learner cell>", "exec"), namespace)
    call = CaseCall((codec.encode(torch.randn(3, 4)),), {}, (), tuple(rules))
    outcome = run_case(namespace["answer"], call)
    found[route] = getattr(outcome, "name", type(outcome).__name__)
print(json.dumps(found))
"""


def test_the_graders_order_notices_each_route_and_spares_honest_code():
    """Markers installed first, for good: what the submission binds is already marked."""
    sources = {route: source for route, (source, _) in ROUTES.items()} | HONEST
    result = subprocess.run(
        [sys.executable, "-c", CHILD_ORDER],
        input=json.dumps([list(RULES), sources]),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    for route, (_, name) in ROUTES.items():
        assert found[route] == name, (route, found[route])
    for honest in HONEST:
        assert found[honest] == "EncodedReturn", (honest, found[honest])


def test_a_library_twin_of_the_reference_is_forbidden_where_it_does_the_work():
    """8.2 asks for a decoder block; the library's DecoderBlock.step is that block, one position at
    a time, so calling it is a shortcut like calling the block itself."""
    from test_exercise_specs import learner_solution

    from course_utils.checks import CheckFailed, check
    from course_utils.exercises import find_exercise

    exercise = find_exercise("ex8_2_decoder_block")
    solution = learner_solution(exercise)

    def decoder_block(y, memory, self_mask, memory_mask, block):
        try:
            type(block).step(block, y[:, :1], memory, None, 0, memory_mask)  # the twin
        except Exception:  # noqa: BLE001 - reached is enough
            pass
        return solution(y, memory, self_mask, memory_mask, block)

    with pytest.raises(CheckFailed, match="calls course_utils.transformer.DecoderBlock.step"):
        check(exercise.grade_id, decoder_block)
