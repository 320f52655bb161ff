"""Structure-aware fuzzing of the .ncd reader and decoder (files from tools/ncd_fuzz.py: valid CRCs, hostile
values). Every case must end as a clean one-line error, a concealment or a decode, within the budget: output no
longer than the file's bytes justify, bounded memory, bounded time. 100,000 cases: `pytest -m slow` or
`python tools/fuzz_ncd.py --cases 100000`."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tools.ncd_fuzz import hostile_file, parse_only, run_case

CLEAN = {"refused", "concealed", "decoded"}


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
@given(rng=st.randoms(use_true_random=False))
def test_fuzz_decode_within_budget(rng):
    outcome, facts = run_case(hostile_file(rng, light=True))
    assert outcome in CLEAN, facts


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
@given(rng=st.randoms(use_true_random=False))
def test_fuzz_info_never_fails_on_full_strength_files(rng):
    assert parse_only(hostile_file(rng)) in ("refused", "parsed")


@pytest.mark.slow
def test_fuzz_100k_cases_full_strength():
    for seed in range(100_000):
        outcome, facts = run_case(hostile_file(random.Random(seed)))
        assert outcome in CLEAN, (seed, facts)
