"""Weights that ship with the course, so that a notebook can compare with a model it has no time
budget to train itself. Each is evaluated live by the notebook that loads it; each was made by one
command, given here, on a 2-core CPU.

* ``bahdanau.pt`` — notebook 02's attention RNN on notebook 02's data (about a minute)::

      python -m course_utils.seq2seq --model bahdanau --steps 600 --hidden 48 --lr 3e-3 --seed 0 \\
          --threads 2 --out course_utils/pretrained/bahdanau.pt

* ``transformer.pt`` — notebook 08's Transformer, its recipe, seed and the course's blocks (about
  50 s). Notebook 08 trains this model live from the learner's blocks once their checks pass, and
  loads this one until then::

      python -m course_utils.transformer_training --out course_utils/pretrained/transformer.pt

* ``transformer_no_positions.pt`` — notebook 08's Transformer without positional encodings, its
  recipe and seed otherwise (about 50 s)::

      python -m course_utils.transformer_training --no-positions \\
          --out course_utils/pretrained/transformer_no_positions.pt

* ``streaming_decoder.pt`` — notebook 13's streaming decoder: notebook 09's tiny RoPE decoder trained on the
  latest-signal task by ``course_utils.streaming_decoder.RECIPE`` (a few seconds; notebook 13's claims were
  decided over seeds 0–4 of this command)::

      COURSE_THREADS=1 python -m course_utils.streaming_decoder --out course_utils/pretrained/streaming_decoder.pt

``tests/test_pretrained.py`` checks that each loads and is the model its command describes.
"""

from __future__ import annotations

from pathlib import Path

from course_utils.seq2seq.data import TranslationData
from course_utils.seq2seq.model import Seq2Seq, load_model
from course_utils.streaming_decoder import load_streaming_decoder
from course_utils.tiny_decoder import TinyDecoder
from course_utils.transformer import Seq2SeqTransformer
from course_utils.transformer_training import load_transformer

HERE = Path(__file__).parent
BAHDANAU_PATH = HERE / "bahdanau.pt"
BAHDANAU_CONFIG = {"kind": "bahdanau", "embed_dim": 48, "hidden_dim": 48, "attention_dim": 48}
TRANSFORMER_PATH = HERE / "transformer.pt"
NO_POSITIONS_PATH = HERE / "transformer_no_positions.pt"
STREAMING_DECODER_PATH = HERE / "streaming_decoder.pt"


def load_pretrained_bahdanau(map_location="cpu") -> Seq2Seq:
    """Notebook 02's Bahdanau model as trained by the command above, in evaluation mode."""
    return load_model(BAHDANAU_PATH, map_location=map_location)


def load_pretrained_transformer(data: TranslationData, map_location="cpu") -> Seq2SeqTransformer:
    """Notebook 08's Transformer, trained by its recipe from the course's blocks."""
    return load_transformer(TRANSFORMER_PATH, data, map_location=map_location)


def load_pretrained_no_positions(data: TranslationData, map_location="cpu") -> Seq2SeqTransformer:
    """Notebook 08's ablation: its Transformer trained without positional encodings."""
    return load_transformer(NO_POSITIONS_PATH, data, map_location=map_location)


def load_pretrained_streaming_decoder(map_location="cpu") -> TinyDecoder:
    """Notebook 13's streaming decoder, as trained by the command above, in evaluation mode."""
    return load_streaming_decoder(STREAMING_DECODER_PATH, map_location=map_location)
