"""Mistakes that several exercises share, built from the exercise's reference.

Each factory takes the reference (the course function whose return value is the right answer) and
returns the :class:`~course_utils.feedback.spec.Mistake` objects for an exercise's ``mistakes``.
"""

from __future__ import annotations

from collections.abc import Callable

from course_utils.feedback.spec import NOT_APPLICABLE, Mistake
from course_utils.softmax import softmax


def swapped_pair(reference: Callable) -> Mistake:
    """Returning the reference's (output, weights) pair the other way round."""

    def weights_then_output(*arguments):
        output, weights = reference(*arguments)
        return weights, output

    return Mistake(
        "it matches (weights, output): return the pair as (output, weights)", weights_then_output
    )


def raw_score_mistakes(
    reference: Callable, softmax_comes: str, single_position: str
) -> tuple[Mistake, Mistake]:
    """The two mistakes of every score exercise: a softmax too early, a .squeeze() too many.

    ``softmax_comes`` says where the notebook applies the softmax ("afterwards"), and
    ``single_position`` names the notebook's axis of size one ("a single key").
    """

    def softmaxed(*arguments):
        return softmax(reference(*arguments), dim=-1)

    def squeezed(*arguments):
        scores = reference(*arguments)
        return scores.squeeze() if 1 in scores.shape else NOT_APPLICABLE

    return (
        Mistake(
            f"it matches softmax weights: return the raw scores e_j, the softmax comes {softmax_comes}",
            softmaxed,
        ),
        Mistake(
            f"it matches .squeeze() dropping every axis of size 1 (a batch of one, {single_position}): "
            "drop only the last one with .squeeze(-1)",
            squeezed,
        ),
    )
