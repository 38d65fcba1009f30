"""Recompute every seed range that the prose of notebooks 08–13 quotes, and say whether it still holds.

    python -m course_utils.benchmark.seed_ranges                    # every range (about half an hour)
    python -m course_utils.benchmark.seed_ranges --only 11 12-copy  # by notebook, or by range id
    python -m course_utils.benchmark.seed_ranges --list

A notebook decides a claim's threshold from several training seeds, then quotes the spread in its
prose ("decided from seeds 0–19: …"). Each :class:`QuotedRange` below names the sentence, the seeds,
and the figures as the prose rounds them; ``compute`` trains or measures once per seed with the
notebook's own settings and library calls. The report prints, per figure, the quoted range, the
recomputed one, and ``holds`` when the quoted range, rounded as the prose rounds it, is what the seeds
give now. A figure that no longer holds means the sentence (and perhaps the assertion's margin) must
be re-decided. Ranges that run under other kernel sets (08's accuracy) start a new process per set,
since the kernel variables only act before torch is imported.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass

import torch

from course_utils.helpers.kernel_sets import environment
from course_utils.helpers.runtime import seed_everything

Figures = dict[str, list[float]]  # figure name -> its value at each seed (or run)


@dataclass(frozen=True)
class QuotedRange:
    """One quoted spread: where it is, what it says, and how to measure it again."""

    id: str
    notebook: str
    sentence: str  # the prose, shortened
    quoted: dict[str, tuple[float | None, float | None]]  # figure -> (low, high); None: not quoted
    digits: int | dict[str, int]  # the decimals the prose rounds to: for all figures, or per figure
    compute: Callable[[], Figures]
    bounds: bool = False  # True: the prose says "at least low" / "at most high", not the extremes


# --------------------------------------------------------------------------------------------------
# 08: the Transformer (trained by the recipe of course_utils.transformer_training)


def _transformer_runs(seeds: range) -> list[tuple[float, torch.Tensor]]:
    from course_utils import seq2seq
    from course_utils.transformer import cross_attention_agreement
    from course_utils.transformer_training import train_transformer

    data = seq2seq.make_data(num_pairs=6000, held_out=600, seed=0)  # notebook 08's data
    runs = []
    for seed in seeds:
        network, model, _ = train_transformer(data, seed=seed, progress=False)
        accuracy = seq2seq.evaluate(model, data.held_out).accuracy
        runs.append((accuracy, cross_attention_agreement(network, data)))
    return runs


def _transformer_accuracy_on_every_kernel_set() -> Figures:
    accuracies = []
    for kernel_set in ("default", "avx2", "native"):
        command = [
            sys.executable,
            "-m",
            "course_utils.benchmark.seed_ranges",
            "--transformer-accuracy-here",
        ]
        result = subprocess.run(
            command,
            env=environment(kernel_set, threads=2),
            capture_output=True,
            text=True,
            check=True,
        )
        accuracies += json.loads(result.stdout.strip().splitlines()[-1])
    return {"exact-match accuracy, %": [100 * accuracy for accuracy in accuracies]}


def _transformer_heads() -> Figures:
    runs = _transformer_runs(range(5))
    return {
        "best head, %": [100 * agreement.max().item() for _, agreement in runs],
        "first decoder layer's heads, %": [100 * v for _, a in runs for v in a[0].tolist()],
    }


# --------------------------------------------------------------------------------------------------
# 09: positions and grouped-query attention on the latest-signal task


def _tiny_decoders(seed: int):
    from course_utils.length_extrapolation import LatestSignalTask, train_decoder
    from course_utils.tiny_decoder import POSITION_SCHEMES, TinyDecoder

    task, models = LatestSignalTask(), {}
    for positions in POSITION_SCHEMES:
        seed_everything(seed)
        models[positions] = TinyDecoder(task.vocab_size, task.num_classes, positions)
        train_decoder(models[positions], task, steps=300, train_length=32, seed=seed)
    return task, models


def _extrapolation_and_grouping() -> Figures:
    from course_utils.length_extrapolation import accuracy_by_length

    figures: Figures = {}
    for seed in range(6):
        task, models = _tiny_decoders(seed)
        for positions, model in models.items():
            by_length = accuracy_by_length(model, task, (32, 64, 256), seed=1000)
            for length, accuracy in by_length.items():
                figures.setdefault(f"{positions} at {length}", []).append(accuracy)
            for groups in (4, 2, 1):
                grouped = model if groups == 4 else model.grouped(groups)
                accuracy = accuracy_by_length(grouped, task, [32], seed=2000)[32]
                figures.setdefault(f"{positions} with G = {groups}", []).append(accuracy)
    return figures


# --------------------------------------------------------------------------------------------------
# 10: fast-weight capacity and associative recall


def _delta_rule_forgetting() -> Figures:
    from course_utils import associative_memory

    recent, oldest = [], []
    for draw in range(17):
        generator = torch.Generator().manual_seed(draw)
        keys, values = associative_memory.random_associations(256, 64, 64, generator)
        retrieved = associative_memory.retrieve("delta rule", keys, values)
        hits = associative_memory.nearest_value_hits(retrieved, values).float()
        recent.append(hits[-32:].mean().item())
        oldest.append(hits[:64].mean().item())
    return {"32 written last, right": recent, "64 written first, right": oldest}


def _associative_recall() -> Figures:
    from course_utils import associative_memory

    settings = {"pairs": 8, "num_keys": 16, "num_values": 16}
    figures: Figures = {}
    for seed in range(8):
        for mixer in associative_memory.MIXERS:
            model, _ = associative_memory.train_recall(mixer, seed, steps=300, **settings)
            accuracy = associative_memory.recall_accuracy(model, seed=100 + seed, **settings)
            figures.setdefault(mixer, []).append(accuracy)
    # the notebook asserts each gap per seed: softmax − delta rule and delta rule − sum rule
    for better, worse in (("softmax", "delta rule"), ("delta rule", "sum rule")):
        pairs = zip(figures[better], figures[worse], strict=True)
        figures[f"{better} − {worse}, same seed"] = [a - b for a, b in pairs]
    return figures


# --------------------------------------------------------------------------------------------------
# 11: the SE + CBAM classifier, SAGAN's γ, the Perceiver encoder's time


def _channel_spatial_reports(seeds: range, divide_by_map: bool = True):
    """(task, report) for notebook 11's SE + CBAM classifier trained from each seed, as the notebook
    trains it (``evaluate_classifier`` on 512 held-out images)."""
    from course_utils.synthetic_images import ChannelObjectTask
    from course_utils.vision_classifier import (
        ChannelSpatialClassifier,
        evaluate_classifier,
        train_classifier,
    )

    task = ChannelObjectTask(channels=4, size=16, object_size=4, informative=1, noise=0.5)
    for seed in seeds:
        seed_everything(seed)
        model = ChannelSpatialClassifier(task.channels, features=8, divide_by_map=divide_by_map)
        train_classifier(model, task, steps=300, seed=seed)
        yield task, evaluate_classifier(model, task, count=512, seed=2026)


def _channel_spatial_classifier() -> Figures:
    figures: Figures = {"accuracy, %": [], "SE lead over the distractors' average": []}
    figures["peak inside the square, %"] = []
    for task, report in _channel_spatial_reports(range(20)):
        distractors = [c for c in range(task.channels) if c != task.informative]
        weights = report["channel_weights"]
        figures["accuracy, %"].append(100 * report["accuracy"])
        lead = weights[task.informative] - weights[distractors].mean()
        figures["SE lead over the distractors' average"].append(lead.item())
        figures["peak inside the square, %"].append(100 * report["peak_in_box"])
    return figures


def _plain_mean_pooling() -> Figures:
    reports = _channel_spatial_reports(range(5), divide_by_map=False)
    peaks = [100 * report["peak_in_box"] for _, report in reports]
    return {"peak inside the square, plain mean of a · F, %": peaks}


def _sagan_gamma() -> Figures:
    from course_utils.synthetic_images import ChannelObjectTask
    from course_utils.vision_classifier import (
        SelfAttentionClassifier,
        held_out_accuracy,
        train_classifier,
    )

    task = ChannelObjectTask(channels=4, size=8, object_size=2, informative=1, noise=0.5)
    figures: Figures = {"|γ| at the end": [], "accuracy": [], "accuracy lost with γ = 0": []}
    for seed in range(20):
        seed_everything(seed)
        model = SelfAttentionClassifier(task.channels, features=8, key_dim=4)
        train_classifier(model, task, steps=200, seed=seed)
        accuracy = held_out_accuracy(model, task, count=512, seed=2026)
        with torch.no_grad():
            model.attention.gamma.abs_()  # only the size is reported
            figures["|γ| at the end"].append(model.attention.gamma.item())
            model.attention.gamma.zero_()
        figures["accuracy"].append(accuracy)
        lost = accuracy - held_out_accuracy(model, task, count=512, seed=2026)
        figures["accuracy lost with γ = 0"].append(lost)
    return figures


def _perceiver_encoder_power() -> Figures:
    from course_utils.helpers.timing import power_law_exponent
    from course_utils.perceiver import PerceiverEncoder, encoder_seconds

    lengths, powers = [4096, 8192, 16384, 32768, 65536], []
    for _ in range(12):  # encoder_seconds times on one thread
        encoder = PerceiverEncoder(width=32, latent_count=32, reads=2, latent_layers=1)
        powers.append(power_law_exponent(lengths, encoder_seconds(encoder, lengths, rounds=5)))
    return {"fitted p": powers}


# --------------------------------------------------------------------------------------------------
# 12: the pointer network, the NTM's copy through memory


def _pointer_networks() -> Figures:
    from course_utils.pointer_network import exact_sort_rate, train_sorter

    figures: Figures = {}
    for seed in range(5):
        for mask_pointed in (True, False):
            model, _ = train_sorter(
                seed=seed,
                steps=300,
                batch=128,
                min_length=5,
                max_length=8,
                mask_pointed=mask_pointed,
            )
            name = "with the mask" if mask_pointed else "without the mask"
            rates = {n: 100 * exact_sort_rate(model, n, seed=100 + n) for n in (5, 6, 7, 8, 10, 16)}
            if mask_pointed:
                figures.setdefault(f"{name}, n = 5-8, 10, 16, %", []).append(min(rates.values()))
                figures.setdefault(f"{name}, highest, %", []).append(max(rates.values()))
            else:
                for n in (5, 6, 7, 8):
                    figures.setdefault(f"{name}, n = 5-8, %", []).append(rates[n])
                figures.setdefault(f"{name}, n = 10, %", []).append(rates[10])
                figures.setdefault(f"{name}, n = 16, %", []).append(rates[16])
    return figures


def _ntm_copy() -> Figures:
    from course_utils.ntm_addressing import HeadParameters, address_sequence, ntm_read, ntm_write

    errors, in_order = [], []
    slots, width, length = 8, 5, 5
    forward_shift = torch.tensor([0.05, 0.1, 0.85], dtype=torch.float64)
    for seed in range(20):
        sequence = torch.randn(
            length, width, dtype=torch.float64, generator=torch.Generator().manual_seed(seed)
        )
        memory = torch.zeros(slots, width, dtype=torch.float64)
        start = torch.zeros(slots, dtype=torch.float64)
        start[0] = 1.0
        forward = HeadParameters(memory[0], 1.0, 0.0, forward_shift, 3.0)
        steps = address_sequence(memory, start, [forward] * (length - 1))
        for x, w in zip(sequence, [start] + [step.sharpened for step in steps], strict=True):
            memory = ntm_write(memory, w, torch.ones(width, dtype=torch.float64), x)
        find_first = HeadParameters(sequence[0], 20.0, 1.0, torch.tensor([0.0, 1.0, 0.0]), 3.0)
        uniform = torch.full((slots,), 1 / slots, dtype=torch.float64)
        reads = torch.stack(
            [
                ntm_read(memory, step.sharpened)
                for step in address_sequence(
                    memory, uniform, [find_first] + [forward] * (length - 1)
                )
            ]
        )
        similarity = torch.nn.functional.cosine_similarity(reads[:, None], sequence[None], dim=-1)
        in_order.append(float(similarity.argmax(dim=1).tolist() == list(range(length))))
        errors.append(((reads - sequence).norm(dim=-1) / sequence.norm(dim=-1)).max().item())
    return {"largest relative error": errors, "reads in order (1 = yes)": in_order}


# --------------------------------------------------------------------------------------------------
# 13: attention sinks on notebook 09's decoder, streamed past its window


def _attention_sinks() -> Figures:
    from course_utils.attention_sinks import (
        attention_on_first_keys,
        streaming_loss,
        streaming_run,
        uniform_share_of_first_keys,
    )
    from course_utils.length_extrapolation import LatestSignalTask
    from course_utils.streaming_decoder import train_streaming_decoder

    task, figures = LatestSignalTask(), {}
    tokens, answers = task.batch(64, 128, torch.Generator().manual_seed(1000))
    short_tokens, _ = task.batch(64, 32, torch.Generator().manual_seed(2000))
    for seed in range(5):
        model = train_streaming_decoder(seed)
        losses = {
            name: streaming_loss(model, tokens, answers, window, sinks, start=32)
            for name, (window, sinks) in {
                "full attention": (128, 0),
                "window": (16, 0),
                "window + sinks": (16, 4),
            }.items()
        }
        for name, loss in losses.items():
            figures.setdefault(f"loss, {name}", []).append(loss)
        lowered = losses["window"] - losses["window + sinks"]
        figures.setdefault("sinks lowered the loss by", []).append(lowered)
        _, (weights,) = streaming_run(model, short_tokens, 32, 0)
        share = attention_on_first_keys(weights, first=1, start=8)
        figures.setdefault("first token's share of attention", []).append(share)
    figures["an even spread's share"] = [uniform_share_of_first_keys(32, first=1, start=8)]
    return figures


QUOTED_RANGES = (
    QuotedRange(
        "08-accuracy",
        "08",
        "96.5–99.2 % over 3 training seeds × 3 CPU kernel sets",
        {"exact-match accuracy, %": (96.5, 99.2)},
        1,
        _transformer_accuracy_on_every_kernel_set,
    ),
    QuotedRange(
        "08-heads",
        "08",
        "Over five training seeds the best head scored between 93 % and 96 %; the first decoder "
        "layer's heads stayed between 43 % and 67 %",
        {
            "best head, %": (93, 96),
            "first decoder layer's heads, %": (43, 67),
        },
        0,
        _transformer_heads,
    ),
    QuotedRange(
        "09-extrapolation",
        "09",
        "training seeds 0–5, accuracy at 32 / 64 / 256 tokens; G = 4 / 2 / 1",
        {
            "sinusoidal at 32": (0.98, 0.99),
            "sinusoidal at 64": (0.66, 0.70),
            "sinusoidal at 256": (0.38, 0.42),
            "rope at 32": (1.00, 1.00),
            "rope at 64": (0.82, 0.84),
            "rope at 256": (0.44, 0.46),
            "alibi at 32": (0.96, 0.99),
            "alibi at 64": (0.96, 0.98),
            "alibi at 256": (0.96, 0.97),
            "alibi with G = 4": (0.97, 0.98),
            "alibi with G = 2": (0.63, 0.87),
            "alibi with G = 1": (0.39, 0.67),
            "sinusoidal with G = 4": (0.98, 0.99),
            "sinusoidal with G = 2": (0.69, 0.87),
            "sinusoidal with G = 1": (0.42, 0.69),
            "rope with G = 4": (1.00, 1.00),
            "rope with G = 2": (0.82, 0.92),
            "rope with G = 1": (0.55, 0.65),
        },
        2,
        _extrapolation_and_grouping,
    ),
    QuotedRange(
        "10-forgetting",
        "10",
        "17 draws of 256 pairs: at least 0.93 and at most 0.05 on each",
        {"32 written last, right": (0.93, None), "64 written first, right": (None, 0.05)},
        2,
        _delta_rule_forgetting,
        bounds=True,
    ),
    QuotedRange(
        "10-recall",
        "10",
        "training seeds 0–7: softmax 1.00 every time, delta rule 0.88–0.92, sum rule 0.78–0.84; on the "
        "same seed softmax led by 0.08–0.12, the delta rule led the sum rule by 0.05–0.14",
        {
            "softmax": (1.00, 1.00),
            "delta rule": (0.88, 0.92),
            "sum rule": (0.78, 0.84),
            "softmax − delta rule, same seed": (0.08, 0.12),
            "delta rule − sum rule, same seed": (0.05, 0.14),
        },
        2,
        _associative_recall,
    ),
    QuotedRange(
        "11-classifier",
        "11",
        "20 training seeds: weakest accuracy 99.8 %, SE lead 0.06, peak inside the square 97.9 %",
        {
            "accuracy, %": (99.8, None),
            "SE lead over the distractors' average": (0.06, None),
            "peak inside the square, %": (97.9, None),
        },
        {
            "accuracy, %": 1,
            "SE lead over the distractors' average": 2,
            "peak inside the square, %": 1,
        },
        _channel_spatial_classifier,
    ),
    QuotedRange(
        "11-plain-mean",
        "11",
        "with a plain mean of a ⊙ F, over training seeds 0–4, the map peaked inside the square on only "
        "1.4–5.5 % of the held-out images",
        {"peak inside the square, plain mean of a · F, %": (1.4, 5.5)},
        1,
        _plain_mean_pooling,
    ),
    QuotedRange(
        "11-sagan",
        "11",
        "20 training seeds: |γ| ended between 0.345 and 0.507; accuracy 0.932–0.973; γ = 0 cost "
        "0.121–0.346",
        {
            "|γ| at the end": (0.345, 0.507),
            "accuracy": (0.932, 0.973),
            "accuracy lost with γ = 0": (0.121, 0.346),
        },
        3,
        _sagan_gamma,
    ),
    QuotedRange(
        "11-encoder",
        "11",
        "24 runs on one thread, 12 on a loaded machine and 12 on an idle one: p stayed between 0.85 "
        "and 1.16",
        {"fitted p": (0.85, 1.16)},
        2,
        _perceiver_encoder_power,
        bounds=True,
    ),
    QuotedRange(
        "12-pointer",
        "12",
        "training seeds 0–4: with the mask 99.9–100 % at 5–8, 10 and 16; without it 22.4–76.5 % at the "
        "trained lengths, 2.5–5.5 % at 10 numbers and none at 16",
        {
            "with the mask, n = 5-8, 10, 16, %": (99.9, 100),
            "with the mask, highest, %": (100, 100),
            "without the mask, n = 5-8, %": (22.4, 76.5),
            "without the mask, n = 10, %": (2.5, 5.5),
            "without the mask, n = 16, %": (0, 0),
        },
        1,
        _pointer_networks,
    ),
    QuotedRange(
        "12-copy",
        "12",
        "20 random sequences, seeds 0–19: the largest relative error was 0.013, every read in order",
        {"largest relative error": (None, 0.013), "reads in order (1 = yes)": (1, 1)},
        3,
        _ntm_copy,
    ),
    QuotedRange(
        "13-sinks",
        "13",
        "training seeds 0–4: full attention 3.50–3.91, window 0.17–0.18, window + sinks 0.15–0.16; "
        "the sinks lowered the loss by 0.015–0.025; first token's share 0.019–0.025 against 0.056",
        {
            "loss, full attention": (3.50, 3.91),
            "loss, window": (0.17, 0.18),
            "loss, window + sinks": (0.15, 0.16),
            "sinks lowered the loss by": (0.015, 0.025),
            "first token's share of attention": (0.019, 0.025),
            "an even spread's share": (0.056, 0.056),
        },
        {
            "sinks lowered the loss by": 3,
            "first token's share of attention": 3,
            "an even spread's share": 3,
        },
        _attention_sinks,
    ),
)


def _digits(quoted_range: QuotedRange, name: str) -> int:
    digits = quoted_range.digits
    return digits if isinstance(digits, int) else digits.get(name, 2)


def _holds(quoted_range: QuotedRange, name: str, values: list[float]) -> bool:
    """Whether the prose's range for ``name`` is what ``values`` give, rounded as the prose rounds.

    A quoted extreme must equal the rounded min (or max); with ``bounds`` it only has to bound it.
    """
    low, high = quoted_range.quoted[name]
    digits = _digits(quoted_range, name)
    smallest, largest = round(min(values), digits), round(max(values), digits)
    if quoted_range.bounds:
        return (low is None or smallest >= low) and (high is None or largest <= high)
    return (low is None or smallest == low) and (high is None or largest == high)


def report(quoted_range: QuotedRange, figures: Figures) -> list[str]:
    """The report's lines for one quoted range: one per figure, quoted against recomputed."""
    lines = [f"{quoted_range.id} (notebook {quoted_range.notebook}): {quoted_range.sentence}"]
    for name, values in figures.items():
        digits = _digits(quoted_range, name)
        recomputed = f"{min(values):.{digits + 1}f}–{max(values):.{digits + 1}f}"
        as_quoted = f"({round(min(values), digits)}–{round(max(values), digits)})"
        quoted = quoted_range.quoted.get(name)
        verdict = (
            "not quoted"
            if quoted is None
            else ("holds" if _holds(quoted_range, name, values) else "DIFFERS")
        )
        quoted_text = (
            "—" if quoted is None else "–".join("·" if q is None else str(q) for q in quoted)
        )
        lines.append(
            f"  {name:<45} quoted {quoted_text:<12} recomputed {recomputed:<14} {as_quoted:<14} {verdict}"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--only", nargs="*", default=None, help="notebook numbers or range ids")
    parser.add_argument("--list", action="store_true", help="list the quoted ranges and stop")
    parser.add_argument("--transformer-accuracy-here", action="store_true", help=argparse.SUPPRESS)
    arguments = parser.parse_args(argv)
    if arguments.transformer_accuracy_here:  # one kernel set, in this process
        torch.set_num_threads(int(os.environ.get("COURSE_THREADS", "1")))
        print(json.dumps([accuracy for accuracy, _ in _transformer_runs(range(3))]))
        return 0
    chosen = [
        quoted_range
        for quoted_range in QUOTED_RANGES
        if arguments.only is None
        or quoted_range.id in arguments.only
        or quoted_range.notebook in arguments.only
    ]
    if arguments.only is not None and not chosen:
        known = sorted({q.id for q in QUOTED_RANGES} | {q.notebook for q in QUOTED_RANGES})
        parser.error(
            f"--only: expected notebook numbers or range ids from {known}, got {arguments.only}"
        )
    for quoted_range in chosen:
        if arguments.list:
            print(f"{quoted_range.id}: {quoted_range.sentence}")
            continue
        print("\n".join(report(quoted_range, quoted_range.compute())), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
