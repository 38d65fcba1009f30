"""``course-seq2seq`` / ``python -m course_utils.seq2seq``: a longer run than the notebooks afford.

python -m course_utils.seq2seq --model bahdanau --steps 3000 --out bahdanau.pt
"""

from __future__ import annotations

import argparse

from course_utils.seq2seq.data import make_data
from course_utils.seq2seq.evaluation import evaluate
from course_utils.seq2seq.model import MODEL_KINDS, build_model, save_model
from course_utils.seq2seq.training import train


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m course_utils.seq2seq",
        description="Train a toy English→French translator and report held-out exact match by length.",
    )
    parser.add_argument("--model", choices=MODEL_KINDS, default="bahdanau")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument(
        "--hidden",
        type=int,
        default=64,
        help="GRU size per encoder direction, embedding and attention size",
    )
    parser.add_argument("--pairs", type=int, default=6000)
    parser.add_argument("--held-out", type=int, default=600)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default COURSE_THREADS or 1)"
    )
    parser.add_argument("--out", default=None, help="save the trained weights here (state_dict)")
    return parser


def main(argv: list[str] | None = None) -> int:
    from course_utils.helpers.runtime import device, seed_everything

    args = _parser().parse_args(argv)
    seed_everything(args.seed, threads=args.threads)
    data = make_data(args.pairs, args.held_out, seed=args.seed)
    print(data.describe())
    sizes = {"embed_dim": args.hidden, "hidden_dim": args.hidden, "attention_dim": args.hidden}
    model = build_model(args.model, data, **sizes).to(device())
    log = train(model, data, args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed)
    result = evaluate(model, data.held_out)
    print(
        f"{args.model}: {args.steps} steps in {log.seconds:.1f} s, final loss {log.losses[-1]:.4f}"
    )
    print(f"held-out exact match: {100 * result.accuracy:.1f} % ({result.correct}/{result.total})")
    for bucket, accuracy in result.accuracy_by_length().items():
        print(f"  source length {bucket:>6}: {100 * accuracy:5.1f} %")
    if args.out:
        save_model(model, args.out)
        print(f"saved {args.out}")
    return 0
