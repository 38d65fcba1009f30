"""Notebook 08's Transformer on the toy English→French task: the recipe, training, saving, a command line.

The recipe (``RECIPE``) is the notebook's: d = 64, 4 heads, 2 + 2 pre-LN layers, FFN 256, batch 64,
1000 steps of Adam whose learning rate follows the warm-up schedule of "Attention Is All You Need"
rescaled to peak at 3e-3 after 100 steps:

    lr(s) = peak · schedule(s) / schedule(warmup),   schedule(s) = d^-0.5 · min(s^-0.5, s · warmup^-1.5)

``python -m course_utils.transformer_training`` trains one outside a notebook (``course-transformer``);
``--no-positions`` trains the ablation without positional encodings, which notebook 08 loads from
``course_utils/pretrained`` instead of spending its time budget on a second training run::

    python -m course_utils.transformer_training --no-positions \\
        --out course_utils/pretrained/transformer_no_positions.pt
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch

from course_utils.helpers.seeding import seeded
from course_utils.seq2seq.data import TranslationData, make_data
from course_utils.seq2seq.evaluation import evaluate
from course_utils.seq2seq.model import Seq2Seq
from course_utils.seq2seq.training import TrainingLog, train
from course_utils.transformer import (
    DecoderBlock,
    EncoderBlock,
    Seq2SeqTransformer,
    as_seq2seq,
    warmup_schedule,
)

RECIPE = {
    "d_model": 64,
    "num_heads": 4,
    "layers": 2,
    "ffn_dim": 256,
    "steps": 1000,
    "warmup_steps": 100,
    "peak_lr": 3e-3,
    "batch_size": 64,
}


def build_transformer(
    data: TranslationData,
    use_positions: bool = True,
    encoder_block: type[EncoderBlock] = EncoderBlock,
    decoder_block: type[DecoderBlock] = DecoderBlock,
) -> Seq2SeqTransformer:
    """A fresh Transformer of the recipe's size for ``data``'s vocabularies."""
    return Seq2SeqTransformer(
        len(data.source_vocab),
        len(data.target_vocab),
        d_model=RECIPE["d_model"],
        num_heads=RECIPE["num_heads"],
        num_encoder_layers=RECIPE["layers"],
        num_decoder_layers=RECIPE["layers"],
        ffn_dim=RECIPE["ffn_dim"],
        use_positions=use_positions,
        encoder_block=encoder_block,
        decoder_block=decoder_block,
    )


def train_transformer(
    data: TranslationData,
    use_positions: bool = True,
    seed: int = 0,
    schedule: Callable[[int, int, int], float] = warmup_schedule,
    encoder_block: type[EncoderBlock] = EncoderBlock,
    decoder_block: type[DecoderBlock] = DecoderBlock,
    steps: int = RECIPE["steps"],
    progress: bool = True,
    device: torch.device | str | None = None,
) -> tuple[Seq2SeqTransformer, Seq2Seq, TrainingLog]:
    """Seed, build and train by the recipe; returns the network, its ``seq2seq`` view and the log.

    ``schedule(step, d_model, warmup_steps)`` is the warm-up formula (notebook 08 passes the
    learner's); the blocks are the classes the model is made of (notebook 08 passes the learner's).
    Both come back in evaluation mode. The run is seeded with ``seed`` (torch, Python, NumPy) and
    leaves the caller's random state as it was.
    """
    with seeded(seed):  # as seed_everything(seed) would, but the caller's random state is kept
        network = build_transformer(data, use_positions, encoder_block, decoder_block)
        if device is not None:
            network = network.to(device)
        model = as_seq2seq(network, data, name="transformer" if use_positions else "no positions")
        d_model, warmup = RECIPE["d_model"], RECIPE["warmup_steps"]
        peak = schedule(warmup, d_model, warmup)

        def relative_rate(step: int) -> float:  # lr(s) / peak_lr = schedule(s) / schedule(warmup)
            return schedule(step, d_model, warmup) / peak

        log = train(
            model,
            data,
            steps=steps,
            batch_size=RECIPE["batch_size"],
            lr=RECIPE["peak_lr"],
            seed=seed,
            progress=progress,
            lr_schedule=relative_rate,
            foreach=True,
        )
    return network.eval(), model.eval(), log


def save_transformer(network: Seq2SeqTransformer, path) -> None:
    """Write the weights and whether the model uses positions (the rest is the recipe)."""
    torch.save({"use_positions": network.use_positions, "state_dict": network.state_dict()}, path)


def load_transformer(path, data: TranslationData, map_location="cpu") -> Seq2SeqTransformer:
    """Rebuild a model written by :func:`save_transformer`, in evaluation mode."""
    saved = torch.load(path, map_location=map_location, weights_only=True)
    network = build_transformer(data, use_positions=saved["use_positions"])
    network.load_state_dict(saved["state_dict"])
    return network.eval()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m course_utils.transformer_training",
        description="Train notebook 08's Transformer on the toy English→French task.",
    )
    parser.add_argument("--no-positions", action="store_true", help="the ablation: no positions")
    parser.add_argument("--steps", type=int, default=RECIPE["steps"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="save the trained weights here")
    return parser


def main(argv: list[str] | None = None) -> int:
    from course_utils.helpers.runtime import seed_everything

    args = _parser().parse_args(argv)
    seed_everything(args.seed)  # threads and TF32 as every notebook sets them
    data = make_data(num_pairs=6000, held_out=600, seed=0)  # notebooks 02 and 08's data
    network, model, log = train_transformer(
        data, use_positions=not args.no_positions, seed=args.seed, steps=args.steps
    )
    result = evaluate(model, data.held_out)
    print(
        f"{model.name}: {args.steps} steps in {log.seconds:.1f} s, final loss {log.losses[-1]:.4f}"
    )
    print(f"held-out exact match: {100 * result.accuracy:.1f} % ({result.correct}/{result.total})")
    if args.out:
        save_transformer(network, args.out)
        print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
