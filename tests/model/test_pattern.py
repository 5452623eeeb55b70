"""Pattern parsing: every layout maps (loop, layer) to the mixer it declares (golden tables).

Run: pytest tests/model/test_pattern.py
"""

import pytest

from lt2.model.pattern import parse_pattern


def table(pattern, n_layers, loop_count, window=None):
    return parse_pattern(pattern, n_layers, loop_count, window).table()


def test_homogeneous():
    assert table("gdn", 3, 2) == [["gdn"] * 3] * 2


def test_flagship_interleave_4_gdn_1_full():
    row = table("interleave:4:1:gdn:full", 21, 4)
    assert row[0] == (["gdn"] * 4 + ["full"]) * 4 + ["gdn"]
    assert row[0].count("gdn") == 17 and row[0].count("full") == 4
    assert all(r == row[0] for r in row)


@pytest.mark.parametrize(
    "full_to_gdn, expected_full",
    [((1, 1), [1, 3, 5, 7, 9, 11, 13, 15, 17, 19]), ((1, 4), [4, 9, 14, 19]), ((1, 6), [6, 13, 20]), ((1, 12), [12])],
)
def test_hybrid_ratio_ablation(full_to_gdn, expected_full):
    full, gdn = full_to_gdn
    row = table(f"interleave:{gdn}:{full}:gdn:full", 21, 1)[0]
    assert [i for i, m in enumerate(row) if m == "full"] == expected_full


def test_bookend():
    assert table("bookend:full:gdn", 5, 1) == [["full", "gdn", "gdn", "gdn", "full"]]
    assert table("bookend:full:gdn:2", 6, 1) == [["full", "full", "gdn", "gdn", "full", "full"]]
    # first n, last m: an odd number of outer layers (the tiny scale's 3 full of 15, like its 1:4 interleave)
    assert table("bookend:full:gdn:2:1", 6, 1) == [["full", "full", "gdn", "gdn", "gdn", "full"]]


def test_loop_schedule_and_reverse():
    sched = table("SWA=128->SWA=256->SWA=512->full", 2, 4)
    assert sched == [["window=128"] * 2, ["window=256"] * 2, ["window=512"] * 2, ["full"] * 2]
    rev = table("full->swa=512->swa=256->swa=128", 2, 4)
    assert rev == sched[::-1]


def test_explicit_unit_is_tiled():
    assert table("gdn,gdn,dsa", 7, 1) == [["gdn", "gdn", "dsa", "gdn", "gdn", "dsa", "gdn"]]


def test_front_and_back_loaded():
    assert table("front:2:full:gdn", 5, 1) == [["full", "full", "gdn", "gdn", "gdn"]]
    assert table("back:2:full:gdn", 5, 1) == [["gdn", "gdn", "gdn", "full", "full"]]


def test_random_placement_draws_full_slots_over_layers_and_loops():
    layout = parse_pattern("random:4:1", 5, 4, default_window=64)
    assert layout.is_random and layout.n_random_full == 4  # int(5 * 4 * 1 / 5)
    draws = [layout.draw(seed) for seed in range(20)]
    for specs in draws:
        flat = [s for row in specs for s in row]
        assert sum(s.name == "full" for s in flat) == 4
        assert {str(s) for s in flat} <= {"full", "window=64"}
    assert draws[3] == layout.draw(3)  # deterministic in the seed
    assert len({d for d in draws}) > 10  # and really random across seeds
    assert any(d[0] != d[1] for d in draws)  # a layer may be full in one loop and windowed in another


def test_window_default_size():
    assert table("window", 1, 1, window=64) == [["window=64"]]


@pytest.mark.parametrize(
    "pattern, message",
    [
        ("gnd", "unknown mixer 'gnd'; valid mixers: full, window, gdn"),
        ("interleave:4:gdn:full", "expected 'interleave:a:b:mixer_a:mixer_b'"),
        ("interleave:x:1:gdn:full", "a in pattern"),
        ("swa=128->full", "has 2 loop segments but loop_count = 4"),
        ("gdn->full->gdn->full", "mixes weight families"),
        ("window", "needs a window size"),
        ("swa=-3", "must be a positive integer"),
        ("gdn=3", "takes no argument"),
        ("zigzag:1:gdn", "unknown layout 'zigzag'"),
        ("random:4", "expected 'random:w:f'"),
        ("random:1:1->full->full->full", "cannot be one loop"),
        ("front:9:full:gdn", "exceeds n_layers"),
        ("bookend:full:gdn:3", "exceed n_layers"),
        ("bookend:full:gdn:2:4", "exceed n_layers"),
        ("", "empty mixer pattern"),
    ],
)
def test_malformed_patterns_name_the_problem(pattern, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_pattern(pattern, 4, 4)
