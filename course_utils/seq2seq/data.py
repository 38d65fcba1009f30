"""Vocabularies, the deterministic train / held-out split, and padded batches.

A batch pads its sentences with ``<pad>`` (index 0) up to the longest one; ``Batch.source_mask``
marks the real words (True = may attend, the course's mask convention).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import torch

from course_utils.masks import padding_mask
from course_utils.seq2seq.grammar import alignment_matrix, generate_aligned_pair, lexicon

PAD, BOS, EOS = "<pad>", "<bos>", "<eos>"
MIN_SOURCE_LEN, MAX_SOURCE_LEN = 3, 25


class Vocab:
    """Token ↔ index, with <pad>=0, <bos>=1, <eos>=2."""

    def __init__(self, tokens: Iterable[str]):
        self.itos = [PAD, BOS, EOS] + [token for token in tokens if token not in (PAD, BOS, EOS)]
        self.stoi = {token: index for index, token in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            raise ValueError("vocabulary tokens must be distinct")

    def __len__(self) -> int:
        return len(self.itos)

    def unknown(self, tokens: Iterable[str]) -> list[str]:
        return [token for token in tokens if token not in self.stoi]

    def encode(self, tokens: Sequence[str]) -> list[int]:
        missing = self.unknown(tokens)
        if missing:
            raise KeyError(f"unknown tokens {sorted(set(missing))}")
        return [self.stoi[token] for token in tokens]

    def decode(self, indices: Iterable[int]) -> list[str]:
        """Tokens up to (not including) the first <eos>; <pad> and <bos> are skipped."""
        tokens = []
        for index in indices:
            token = self.itos[int(index)]
            if token == EOS:
                break
            if token not in (PAD, BOS):
                tokens.append(token)
        return tokens


@dataclass(frozen=True)
class TranslationData:
    """Deterministic train / held-out split of distinct sentence pairs, with both vocabularies."""

    train: list[tuple[tuple[str, ...], tuple[str, ...]]]
    held_out: list[tuple[tuple[str, ...], tuple[str, ...]]]
    source_vocab: Vocab
    target_vocab: Vocab
    seed: int = 0
    # source tokens → (links, kinds) of its dictionary alignment (see grammar.AlignedPair)
    gold: dict = field(default_factory=dict, repr=False)

    def describe(self) -> str:
        lengths = [len(source) for source, _ in self.train + self.held_out]
        return (
            f"{len(self.train)} training and {len(self.held_out)} held-out sentence pairs, "
            f"source lengths {min(lengths)}–{max(lengths)}, vocabularies "
            f"{len(self.source_vocab)} English / {len(self.target_vocab)} French tokens"
        )

    def dictionary_alignment(self, source: Sequence[str]) -> torch.Tensor:
        """The (French tokens, English tokens) dictionary alignment of one of the data's sources.

        Row k spreads weight 1 over the English words French token k translates (see
        ``grammar.alignment_matrix``), to compare with a row of attention weights.
        """
        key = tuple(source.split() if isinstance(source, str) else source)
        if key not in self.gold:
            raise KeyError(f"{' '.join(key)!r} is not a sentence of this data set")
        links, _ = self.gold[key]
        return alignment_matrix(links, len(key))


def make_data(num_pairs: int = 6000, held_out: int = 600, seed: int = 0) -> TranslationData:
    """``num_pairs`` distinct pairs of 3–25 source tokens; ``held_out`` of them are never trained on.

    The same seed always gives the same pairs in the same order (Python's ``random.Random``).
    """
    if not isinstance(num_pairs, int) or num_pairs < 2:
        raise ValueError(f"num_pairs must be an int >= 2, got {num_pairs!r}")
    if not isinstance(held_out, int) or not 0 < held_out < num_pairs:
        raise ValueError(f"held_out must be an int in 1..{num_pairs - 1}, got {held_out!r}")
    rng = random.Random(seed)
    gold: dict[tuple[str, ...], tuple[list, list]] = {}
    pairs = []
    attempts = 0
    while len(pairs) < num_pairs:
        attempts += 1
        if attempts > 50 * num_pairs:
            raise RuntimeError(f"the grammar produced only {len(pairs)} distinct pairs")
        pair = generate_aligned_pair(rng)
        source = tuple(pair.english)
        if not MIN_SOURCE_LEN <= len(source) <= MAX_SOURCE_LEN or source in gold:
            continue
        gold[source] = (pair.links, pair.kinds)
        pairs.append((source, tuple(pair.french)))
    rng.shuffle(pairs)
    english_words, french_words = lexicon()
    return TranslationData(
        train=pairs[held_out:],
        held_out=pairs[:held_out],
        source_vocab=Vocab(english_words),
        target_vocab=Vocab(french_words),
        seed=seed,
        gold=gold,
    )


@dataclass
class Batch:
    """Padded tensors for one batch. Targets: inputs start with <bos>, outputs end with <eos>."""

    source: torch.Tensor  # (B, S) long, padded with 0
    source_lengths: torch.Tensor  # (B,) long
    target_input: torch.Tensor  # (B, T) long: <bos> y_1 ... y_{T-1}
    target_output: torch.Tensor  # (B, T) long: y_1 ... y_{T-1} <eos>, padded with 0

    @property
    def source_mask(self) -> torch.Tensor:
        """(B, S) bool, True for real source tokens (may be attended)."""
        return padding_mask(self.source_lengths, self.source.shape[1])

    def to(self, target_device) -> Batch:
        return Batch(
            *(
                tensor.to(target_device)
                for tensor in (
                    self.source,
                    self.source_lengths,
                    self.target_input,
                    self.target_output,
                )
            )
        )


def pad(sequences: Sequence[Sequence[int]], value: int = 0) -> torch.Tensor:
    """(len(sequences), longest) long tensor, each row a sequence followed by ``value``."""
    longest = max(len(sequence) for sequence in sequences)
    padded = torch.full((len(sequences), longest), value, dtype=torch.long)
    for row, sequence in enumerate(sequences):
        padded[row, : len(sequence)] = torch.tensor(sequence, dtype=torch.long)
    return padded


def make_batch(pairs, source_vocab: Vocab, target_vocab: Vocab) -> Batch:
    """One padded batch of (source tokens, target tokens) pairs."""
    sources = [source_vocab.encode(source) for source, _ in pairs]
    targets = [target_vocab.encode(target) for _, target in pairs]
    bos, eos = target_vocab.stoi[BOS], target_vocab.stoi[EOS]
    return Batch(
        source=pad(sources),
        source_lengths=torch.tensor([len(source) for source in sources]),
        target_input=pad([[bos, *target] for target in targets]),
        target_output=pad([[*target, eos] for target in targets]),
    )


def bucketed_batches(pairs, data: TranslationData, batch_size: int) -> list[Batch]:
    """Batches of similar source length (little padding): sort by length, then cut."""
    ordered = sorted(pairs, key=lambda pair: (len(pair[0]), len(pair[1])))
    return [
        make_batch(ordered[start : start + batch_size], data.source_vocab, data.target_vocab)
        for start in range(0, len(ordered), batch_size)
    ]
