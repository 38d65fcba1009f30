"""course_utils.helpers.timing: CPU time not wall time, every size in every round, ratios within a round."""

import time

import pytest
import torch

from course_utils.helpers.timing import interleaved_seconds, power_law_exponent, seconds_per_call


def spin(seconds):
    start = time.process_time()
    while time.process_time() - start < seconds:
        pass


def test_seconds_per_call_counts_cpu_time_not_sleep():
    assert seconds_per_call(lambda: time.sleep(0.05)) < 0.01  # sleeping uses no CPU
    assert 0.018 <= seconds_per_call(lambda: spin(0.02), calls=3) < 0.2  # averaged per call


def test_seconds_per_call_calls_the_function_calls_times():
    counter = []
    seconds_per_call(lambda: counter.append(1), calls=4)
    assert len(counter) == 4
    with pytest.raises(ValueError, match="calls must be a positive int"):
        seconds_per_call(lambda: None, calls=0)


def test_interleaved_seconds_times_every_size_once_per_round_after_one_warm_up():
    order = []
    functions = {
        "a": [lambda: order.append("a0"), lambda: order.append("a1")],
        "b": [lambda: order.append("b0")],
    }
    seconds = interleaved_seconds(functions, rounds=2, calls={"a": 1, "b": 2})
    assert order == ["a0", "a1", "b0"] + 2 * ["a0", "a1", "b0", "b0"]
    assert seconds["a"].shape == (2, 2) and seconds["b"].shape == (2, 1)
    assert seconds["a"].dtype == torch.float64 and (seconds["a"] >= 0).all()


def test_interleaved_seconds_rejects_bad_arguments():
    with pytest.raises(ValueError, match="rounds must be a positive int"):
        interleaved_seconds({"a": [lambda: None]}, rounds=0)
    with pytest.raises(ValueError, match=r"calls: expected a count for every name.*\['b'\]"):
        interleaved_seconds({"a": [lambda: None], "b": [lambda: None]}, rounds=1, calls={"a": 1})
    with pytest.raises(TypeError, match=r"functions\['a'\]: expected a non-empty sequence"):
        interleaved_seconds({"a": []}, rounds=1)
    with pytest.raises(TypeError, match=r"functions\['a'\]: expected a non-empty sequence"):
        interleaved_seconds({"a": [3]}, rounds=1)


def test_power_law_exponent_recovers_the_power_of_exact_costs():
    sizes = [256, 512, 1024, 4096]
    n = torch.tensor(sizes, dtype=torch.float64)
    for power in (0.5, 1.0, 2.0):
        seconds = torch.stack([3e-6 * n**power, 7e-6 * n**power])  # two rounds, different constants
        assert abs(power_law_exponent(sizes, seconds) - power) < 1e-12


def test_power_law_exponent_fits_within_each_round_and_takes_the_median():
    sizes = [1, 2, 4]
    # round 1 linear; round 2 slower throughout (a burst) but still linear; round 3 quadratic
    seconds = torch.tensor(
        [[1.0, 2.0, 4.0], [10.0, 20.0, 40.0], [1.0, 4.0, 16.0]], dtype=torch.float64
    )
    assert abs(power_law_exponent(sizes, seconds) - 1.0) < 1e-12
    # pooling the rounds first would mix the burst into the slope
    pooled = seconds.median(dim=0).values[None]
    assert abs(power_law_exponent(sizes, pooled) - 1.0) > 0.1


def test_power_law_exponent_rejects_bad_arguments():
    with pytest.raises(
        ValueError, match=r"seconds: expected a \(rounds, 3\) tensor.*got shape \(3,\)"
    ):
        power_law_exponent([1, 2, 4], torch.ones(3))
    with pytest.raises(
        ValueError, match=r"seconds: expected a \(rounds, 3\) tensor.*got shape \(1, 2\)"
    ):
        power_law_exponent([1, 2, 4], torch.ones(1, 2))
    with pytest.raises(ValueError, match="sizes: expected at least two different positive sizes"):
        power_law_exponent([4, 4], torch.ones(1, 2))
    with pytest.raises(ValueError, match="sizes: expected at least two different positive sizes"):
        power_law_exponent([0, 4], torch.ones(1, 2))
    with pytest.raises(ValueError, match="seconds: expected positive times.*time more calls"):
        power_law_exponent([1, 4], torch.tensor([[0.0, 1.0]]))


def test_a_linear_and_a_quadratic_cost_are_told_apart():
    # the same measurement the notebooks use, on functions whose costs we know
    sizes = [1, 2, 4]
    seconds = interleaved_seconds(
        {
            "linear": [lambda n=n: spin(0.002 * n) for n in sizes],
            "quadratic": [lambda n=n: spin(0.001 * n * n) for n in sizes],
        },
        rounds=3,
    )
    assert power_law_exponent(sizes, seconds["linear"]) < 1.5
    assert power_law_exponent(sizes, seconds["quadratic"]) > 1.5


def test_interleaved_seconds_times_on_one_thread_and_restores_the_count():
    seen = []
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        interleaved_seconds({"a": [lambda: seen.append(torch.get_num_threads())]}, rounds=2)
        assert seen[1:] == [1, 1]  # the warm-up may run on any count; the timed calls on one
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
