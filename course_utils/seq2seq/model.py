"""Encoder + decoder as one model: building, greedy translation, saving and loading.

``build_model(kind, data)`` makes ``plain`` (no attention), ``bahdanau`` or a Luong variant;
``Seq2Seq.translate`` decodes greedily and returns the alignment weights row by row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from course_utils.alignment import AdditiveAttention, LuongAttention
from course_utils.masks import padding_mask
from course_utils.seq2seq.data import BOS, EOS, Batch, TranslationData, Vocab, pad
from course_utils.seq2seq.decoders import AttentionDecoder, PlainDecoder
from course_utils.seq2seq.encoder import Encoder
from course_utils.seq2seq.grammar import detokenize, lexicon


@dataclass
class Translation:
    """Greedy output for one source sentence; ``weights`` is (target steps incl. <eos>, source)."""

    source: list[str]
    tokens: list[str]
    weights: torch.Tensor | None

    @property
    def text(self) -> str:
        return detokenize(self.tokens)

    @property
    def target_labels(self) -> list[str]:
        """Row labels for ``weights``: the produced tokens, then <eos> when it was produced."""
        return self.tokens + (
            [EOS] if self.weights is not None and len(self.weights) > len(self.tokens) else []
        )


class Seq2Seq(nn.Module):
    """Encoder + decoder, with greedy translation of raw sentences."""

    def __init__(self, encoder: Encoder, decoder: nn.Module, data: TranslationData, name: str = ""):
        super().__init__()
        self.encoder, self.decoder = encoder, decoder
        self.source_vocab, self.target_vocab = data.source_vocab, data.target_vocab
        self.name = name
        self.config: dict = {}  # build_model's arguments, so save_model / load_model can rebuild it

    def forward(self, batch: Batch):
        encoder_states, summary = self.encoder(batch.source, batch.source_lengths)
        return self.decoder(batch.target_input, encoder_states, summary, batch.source_mask)

    def _tokenize(self, sentence) -> list[str]:
        tokens = sentence.lower().split() if isinstance(sentence, str) else list(sentence)
        if not tokens:
            raise ValueError("cannot translate an empty sentence")
        missing = self.source_vocab.unknown(tokens)
        if missing:
            known = len(self.source_vocab) - 3
            raise ValueError(
                f"unknown words {sorted(set(missing))} in {' '.join(tokens)!r}: the model knows only "
                f"the {known} English words of the toy grammar (see seq2seq.lexicon())"
            )
        return tokens

    def _greedy_decode(self, source, lengths, limit: int):
        """Feed back the most likely word until every sentence has produced <eos> (or ``limit``).

        Returns the produced indices (B, steps) and the weights (B, steps, S), or None without attention.
        """
        mask = padding_mask(lengths, source.shape[1])
        encoder_states, summary = self.encoder(source, lengths)
        memory = self.decoder.start(encoder_states, summary, mask)
        token = torch.full((len(source),), self.target_vocab.stoi[BOS], device=source.device)
        produced, step_weights = [], []
        finished = torch.zeros(len(source), dtype=torch.bool, device=source.device)
        for _ in range(limit):
            logits, weights = self.decoder.step(token, memory)
            token = logits.argmax(dim=-1)
            produced.append(token)
            if weights is not None:
                step_weights.append(weights)
            finished |= token == self.target_vocab.stoi[EOS]
            if bool(finished.all()):
                break
        all_weights = torch.stack(step_weights, 1).cpu() if step_weights else None
        return torch.stack(produced, 1).cpu(), all_weights

    @torch.no_grad()
    def translate_batch(self, sentences: Sequence, max_len: int | None = None) -> list[Translation]:
        """Greedy decoding of several sentences at once (strings or token lists)."""
        token_lists = [self._tokenize(sentence) for sentence in sentences]
        was_training = self.training
        self.eval()
        target_device = next(self.parameters()).device
        source = pad([self.source_vocab.encode(tokens) for tokens in token_lists]).to(target_device)
        lengths = torch.tensor([len(tokens) for tokens in token_lists], device=target_device)
        produced, all_weights = self._greedy_decode(
            source, lengths, limit=max_len or 2 * source.shape[1] + 5
        )
        self.train(was_training)
        translations = []
        for row, tokens in enumerate(token_lists):
            output = self.target_vocab.decode(produced[row])
            weights = None
            if all_weights is not None:
                steps = min(len(output) + 1, all_weights.shape[1])  # the tokens and <eos>
                weights = all_weights[row, :steps, : len(tokens)]
            translations.append(Translation(tokens, output, weights))
        return translations

    def translate(self, sentence, max_len: int | None = None) -> Translation:
        """Greedy translation of one sentence; ``.text``, ``.tokens`` and alignment ``.weights``."""
        return self.translate_batch([sentence], max_len)[0]


MODEL_KINDS = (
    "plain",
    "bahdanau",
    "luong-dot",
    "luong-general",
    "luong-concat",
    "luong-local",
    "luong-feed",
)


def _decoder(
    kind: str,
    target_size: int,
    embed_dim: int,
    decoder_dim: int,
    encoder_dim: int,
    attention_dim: int,
    window: int,
) -> nn.Module:
    """The decoder (with its attention module) of one of MODEL_KINDS."""
    if kind == "plain":
        return PlainDecoder(target_size, embed_dim, decoder_dim, encoder_dim)
    if kind == "bahdanau":
        attention = AdditiveAttention(decoder_dim, encoder_dim, attention_dim)
        return AttentionDecoder(target_size, embed_dim, decoder_dim, encoder_dim, attention)
    score = {"luong-dot": "dot", "luong-concat": "concat"}.get(kind, "general")
    attention = LuongAttention(
        decoder_dim,
        encoder_dim,
        score=score,
        window=window if kind == "luong-local" else None,
        hidden_dim=attention_dim,
    )
    return AttentionDecoder(
        target_size,
        embed_dim,
        decoder_dim,
        encoder_dim,
        attention,
        style="luong",
        input_feeding=kind == "luong-feed",
    )


def build_model(
    kind: str,
    data: TranslationData,
    embed_dim: int = 64,
    hidden_dim: int = 64,
    attention_dim: int = 64,
    window: int = 4,
) -> Seq2Seq:
    """A fresh model: ``plain`` (no attention), ``bahdanau``, or a Luong variant.

    ``luong-local`` is local-p with the general score and half-width ``window``; ``luong-feed`` is
    global general attention with input feeding. The encoder is a BiGRU of ``hidden_dim`` per
    direction, the decoder a GRU of 2·hidden_dim (so Luong's dot score compares equal sizes).
    """
    if kind not in MODEL_KINDS:
        raise ValueError(f"kind must be one of {MODEL_KINDS}, got {kind!r}")
    encoder = Encoder(len(data.source_vocab), embed_dim, hidden_dim)
    encoder_dim = decoder_dim = encoder.output_dim
    decoder = _decoder(
        kind, len(data.target_vocab), embed_dim, decoder_dim, encoder_dim, attention_dim, window
    )
    model = Seq2Seq(encoder, decoder, data, name=kind)
    model.config = {
        "kind": kind,
        "embed_dim": embed_dim,
        "hidden_dim": hidden_dim,
        "attention_dim": attention_dim,
        "window": window,
    }
    return model


def save_model(model: Seq2Seq, path) -> None:
    """Write the model's configuration and weights (a few hundred kB) to ``path``."""
    if not model.config:
        raise ValueError("save_model needs a model made by build_model (its config rebuilds it)")
    torch.save({"config": model.config, "state_dict": model.state_dict()}, path)


def load_model(path, map_location="cpu") -> Seq2Seq:
    """Rebuild a model written by ``save_model`` (or ``python -m course_utils.seq2seq --out``)."""
    saved = torch.load(path, map_location=map_location, weights_only=True)
    english_words, french_words = lexicon()
    vocabularies = TranslationData([], [], Vocab(english_words), Vocab(french_words))
    model = build_model(data=vocabularies, **saved["config"])
    model.load_state_dict(saved["state_dict"])
    return model.eval()
