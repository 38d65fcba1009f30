"""The decoder notebook 13 streams: notebook 09's tiny RoPE decoder trained on the latest-signal task.

One recipe (:data:`RECIPE`): a one-layer ``TinyDecoder`` (4 heads, width 32) with RoPE, 300 Adam steps
on sequences of 32 tokens with full causal attention. Notebook 13 loads the weights this module's
command wrote (``course_utils/pretrained/streaming_decoder.pt``) and reads sequences of 128 tokens
through a window, a window with sinks, and full attention (``course_utils.attention_sinks``)::

    python -m course_utils.streaming_decoder --out course_utils/pretrained/streaming_decoder.pt
"""

from __future__ import annotations

import argparse

import torch

from course_utils.attention_sinks import streaming_loss
from course_utils.helpers.seeding import seeded
from course_utils.length_extrapolation import LatestSignalTask, train_decoder
from course_utils.tiny_decoder import TinyDecoder

RECIPE = {"positions": "rope", "steps": 300, "train_length": 32}


def train_streaming_decoder(seed: int = 0) -> TinyDecoder:
    """A RoPE ``TinyDecoder`` trained by :data:`RECIPE` (initialised and trained from ``seed``)."""
    task = LatestSignalTask()
    with seeded(seed):  # the initial weights, as seed_everything(seed) would give them
        model = TinyDecoder(task.vocab_size, task.num_classes, RECIPE["positions"])
    train_decoder(model, task, RECIPE["steps"], RECIPE["train_length"], seed=seed)
    return model.eval()


def save_streaming_decoder(model: TinyDecoder, path) -> None:
    """The model's settings and weights."""
    torch.save({"settings": model.settings, "state_dict": model.state_dict()}, path)


def load_streaming_decoder(path, map_location="cpu") -> TinyDecoder:
    """A model written by :func:`save_streaming_decoder`, in evaluation mode."""
    saved = torch.load(path, map_location=map_location, weights_only=True)
    model = TinyDecoder(**saved["settings"]).to(map_location)
    model.load_state_dict(saved["state_dict"])
    return model.eval()


def main(argv: list[str] | None = None) -> int:
    from course_utils.helpers.runtime import seed_everything

    parser = argparse.ArgumentParser(
        prog="python -m course_utils.streaming_decoder",
        description="Train notebook 13's streaming decoder (notebook 09's tiny RoPE decoder).",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="where to save the weights")
    args = parser.parse_args(argv)
    seed_everything(args.seed)  # threads as every notebook sets them
    model = train_streaming_decoder(args.seed)
    task, length = LatestSignalTask(), 4 * RECIPE["train_length"]
    tokens, answers = task.batch(64, length, torch.Generator().manual_seed(1000))
    for name, window, sinks in (("full", length, 0), ("window 16", 16, 0), ("+ 4 sinks", 16, 4)):
        loss = streaming_loss(model, tokens, answers, window, sinks, start=RECIPE["train_length"])
        print(f"{name:>10}: loss on positions {RECIPE['train_length']}…{length - 1} = {loss:.3f}")
    if args.out:
        save_streaming_decoder(model, args.out)
        print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = [
    "RECIPE",
    "load_streaming_decoder",
    "save_streaming_decoder",
    "train_streaming_decoder",
]
