"""Evaluation: held-out exact match by source length, and how attention compares with a dictionary."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from course_utils.seq2seq.data import TranslationData
from course_utils.seq2seq.grammar import detokenize
from course_utils.seq2seq.model import Seq2Seq


@dataclass
class Evaluation:
    """Exact-match accuracy over held-out pairs, overall and by source-length bucket."""

    correct: int
    total: int
    by_length: dict[tuple[int, int], tuple[int, int]]  # (low, high) → (correct, total)
    mistakes: list[tuple[str, str, str]]  # (source, expected, produced)

    @property
    def accuracy(self) -> float:
        return self.correct / self.total

    def accuracy_by_length(self) -> dict[str, float]:
        return {
            f"{low}–{high}": correct / total
            for (low, high), (correct, total) in self.by_length.items()
            if total
        }

    def bucket_centers(self) -> list[float]:
        return [(low + high) / 2 for (low, high), (_, total) in self.by_length.items() if total]


LENGTH_BUCKETS = ((3, 7), (8, 11), (12, 15), (16, 19), (20, 25))


def evaluate(
    model: Seq2Seq,
    pairs,
    batch_size: int = 200,
    buckets: Sequence[tuple[int, int]] = LENGTH_BUCKETS,
) -> Evaluation:
    """Greedy-decode every source and count exact matches with the reference translation."""
    correct, mistakes = 0, []
    by_length = {bucket: [0, 0] for bucket in buckets}
    ordered = sorted(pairs, key=lambda pair: len(pair[0]))
    for start in range(0, len(ordered), batch_size):
        chunk = ordered[start : start + batch_size]
        for (source, target), translation in zip(
            chunk, model.translate_batch([list(source) for source, _ in chunk]), strict=True
        ):
            hit = tuple(translation.tokens) == tuple(target)
            correct += hit
            if not hit:
                mistakes.append((" ".join(source), detokenize(target), translation.text))
            for low, high in buckets:
                if low <= len(source) <= high:
                    by_length[(low, high)][0] += hit
                    by_length[(low, high)][1] += 1
    return Evaluation(
        correct, len(ordered), {key: tuple(value) for key, value in by_length.items()}, mistakes
    )


@dataclass
class Agreement:
    """Rows of one kind of French word: how many agree with the dictionary, and where the others look."""

    agreeing: int = 0
    total: int = 0
    elsewhere: dict[str, int] = field(default_factory=dict)  # kind of source word looked at instead

    @property
    def rate(self) -> float:
        return self.agreeing / self.total if self.total else float("nan")

    def most_looked_at(self) -> tuple[str, float]:
        """The kind of source word the disagreeing rows look at most, and its share of them."""
        if not self.elsewhere:
            return "", 0.0
        kind = max(self.elsewhere, key=self.elsewhere.get)
        return kind, self.elsewhere[kind] / sum(self.elsewhere.values())


def alignment_agreement(model: Seq2Seq, data: TranslationData, pairs=None) -> dict[str, Agreement]:
    """How often attention agrees with the dictionary alignment, per kind of French word.

    For every pair of ``pairs`` (default: the held-out pairs) that the model translates exactly,
    each produced word's row of weights is read: it *agrees* when its largest weight falls on a
    source word the dictionary aligns it with (``data.gold``). A source word's kind is the kind of
    the French word the dictionary aligns with it (so "see" is a verb, "her" an object pronoun).
    """
    pairs = data.held_out if pairs is None else pairs
    result: dict[str, Agreement] = {}
    for start in range(0, len(pairs), 200):
        chunk = pairs[start : start + 200]
        translations = model.translate_batch([list(source) for source, _ in chunk])
        for (source, target), translation in zip(chunk, translations, strict=True):
            if tuple(translation.tokens) != tuple(target) or translation.weights is None:
                continue
            links, kinds = data.gold[tuple(source)]
            source_kind = {
                position: kind for link, kind in zip(links, kinds, strict=True) for position in link
            }
            strongest = translation.weights[: len(target)].argmax(dim=-1).tolist()
            for position, kind in enumerate(kinds):
                tally = result.setdefault(kind, Agreement())
                tally.total += 1
                if strongest[position] in links[position]:
                    tally.agreeing += 1
                else:
                    looked_at = source_kind.get(strongest[position], "unaligned")
                    tally.elsewhere[looked_at] = tally.elsewhere.get(looked_at, 0) + 1
    return dict(sorted(result.items()))
