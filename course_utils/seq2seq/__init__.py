"""A toy English→French translation task and the small RNN encoder–decoders of notebooks 02 and 03.

One concern per module:

* ``grammar``    — the toy grammar: ``generate_pair``, its dictionary alignment
  (``generate_aligned_pair``, ``alignment_matrix``), ``lexicon``, ``detokenize``;
* ``data``       — vocabularies, the deterministic split (``make_data``), padded batches and masks;
* ``encoder``    — the bidirectional GRU ``Encoder``;
* ``decoders``   — ``PlainDecoder`` (no attention, the bottleneck) and ``AttentionDecoder`` in
  Bahdanau's order (score with s_{i-1}, then update the state; one step is ``bahdanau_step``,
  exercise 2.3 of notebook 02) or Luong's (update the state, then score with h_t; optionally with
  input feeding), with a pluggable alignment model from ``course_utils.alignment``;
* ``model``      — ``Seq2Seq``, ``build_model(kind, data)``, greedy ``translate``, save and load;
* ``training``   — ``train``: teacher forcing, Adam, gradient clipping, a tqdm bar;
* ``evaluation`` — ``evaluate`` (exact match by source length) and ``alignment_agreement``;
* ``cli``        — ``course-seq2seq`` / ``python -m course_utils.seq2seq``, a longer run::

    python -m course_utils.seq2seq --model bahdanau --steps 3000 --out bahdanau.pt

Everything is re-exported here: ``from course_utils import seq2seq`` then ``seq2seq.make_data(...)``.
"""

from course_utils.seq2seq.cli import main
from course_utils.seq2seq.data import (
    BOS,
    EOS,
    MAX_SOURCE_LEN,
    MIN_SOURCE_LEN,
    PAD,
    Batch,
    TranslationData,
    Vocab,
    bucketed_batches,
    make_batch,
    make_data,
    pad,
)
from course_utils.seq2seq.decoders import AttentionDecoder, PlainDecoder, bahdanau_step
from course_utils.seq2seq.encoder import Encoder
from course_utils.seq2seq.evaluation import (
    LENGTH_BUCKETS,
    Agreement,
    Evaluation,
    alignment_agreement,
    evaluate,
)
from course_utils.seq2seq.grammar import (
    AlignedPair,
    alignment_matrix,
    detokenize,
    generate_aligned_pair,
    generate_pair,
    lexicon,
)
from course_utils.seq2seq.model import (
    MODEL_KINDS,
    Seq2Seq,
    Translation,
    build_model,
    load_model,
    save_model,
)
from course_utils.seq2seq.training import TrainingLog, train

__all__ = [
    "BOS",
    "EOS",
    "LENGTH_BUCKETS",
    "MAX_SOURCE_LEN",
    "MIN_SOURCE_LEN",
    "MODEL_KINDS",
    "PAD",
    "Agreement",
    "AlignedPair",
    "AttentionDecoder",
    "Batch",
    "Encoder",
    "Evaluation",
    "PlainDecoder",
    "Seq2Seq",
    "TrainingLog",
    "Translation",
    "TranslationData",
    "Vocab",
    "alignment_agreement",
    "alignment_matrix",
    "bahdanau_step",
    "bucketed_batches",
    "build_model",
    "detokenize",
    "evaluate",
    "generate_aligned_pair",
    "generate_pair",
    "lexicon",
    "load_model",
    "main",
    "make_batch",
    "make_data",
    "pad",
    "save_model",
    "train",
]
