"""The schedule simulation of benchmarks/throughput.py, whose numbers the README quotes as the best a scheduler
could do: it must count stages, slots and problems under way as `learn` does."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "throughput.py"
_SPEC = importlib.util.spec_from_file_location("throughput_benchmark", _PATH)
assert _SPEC is not None and _SPEC.loader is not None
throughput = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(throughput)


def test_stages_run_one_after_another_and_calls_of_a_stage_together() -> None:
    # One problem: a call, then three at once, then one: three latencies on enough slots, five on one slot.
    assert throughput.schedule_seconds([[1, 3, 1]], 4, 0.2, 1) == pytest.approx(0.6)
    assert throughput.schedule_seconds([[1, 3, 1]], 1, 0.2, 1) == pytest.approx(1.0)


def test_problems_under_way_bound_the_overlap() -> None:
    chains = [[1, 1]] * 4
    assert throughput.schedule_seconds(chains, 4, 0.2, 4) == pytest.approx(0.4)
    assert throughput.schedule_seconds(chains, 4, 0.2, 2) == pytest.approx(0.8)


def test_knowing_the_longest_chain_beats_first_come_first_served() -> None:
    # Two slots: a chain of 4 and four chains of 1. Served in arrival order the long chain waits behind the short
    # ones at its first step; served first it runs on while the other slot clears the short ones.
    chains = [[1], [1], [1], [1], [1, 1, 1, 1]]
    assert throughput.schedule_seconds(chains, 2, 1.0, 5, "fifo") == pytest.approx(6.0)
    assert throughput.schedule_seconds(chains, 2, 1.0, 5, "longest_first") == pytest.approx(4.0)


def test_the_script_chains_account_for_every_request() -> None:
    chains = throughput.script_chains(128, 1132)
    assert sum(sum(c) for c in chains) == 1132
    assert {len(c) for c in chains} == {3, 5, 7, 9, 11}


def test_serving_the_ends_of_chains_last_lets_a_long_chain_run_on() -> None:
    # Two slots: a chain of five calls (three rounds, a distiller's call, an updater's call) and a short one whose
    # updater makes three calls at once. First come, first served, the long chain's distiller call waits at 3 s
    # behind the short chain's updater calls; served after exploration and distillation they fill the other slot.
    chains = [[1, 1, 1, 1, 1], [1, 1, 3]]
    assert throughput.schedule_seconds(chains, 2, 1.0, 2, "fifo") == pytest.approx(6.0)
    assert throughput.schedule_seconds(chains, 2, 1.0, 2, "ends_last") == pytest.approx(5.0)
