"""The staged sweeper's grid and waves (hydra/sweeper=staged, sweeps/table2.yaml); the real sweep through
it runs in tests/test_sweep.py."""

from __future__ import annotations

import pytest

from hydra_plugins.fcnlab_staged_sweeper.staged_sweeper import grid, waves

TABLE2 = {  # variant -> parent, as conf/model/*.yaml say
    "fcn32s_fixed": None,
    "fcn32s": None,
    "fcn16s": "fcn32s",
    "fcn8s": "fcn16s",
    "fcn32s_mid": "fcn32s",
    "fcn32s_long": "fcn32s_mid",
}


def test_grid_is_the_product_in_order_and_the_command_line_wins():
    jobs = grid(["model=a,b", "seed=0", "lr=1", "seed=0,1,2"])
    assert jobs[:3] == [
        ["model=a", "seed=0", "lr=1"],
        ["model=a", "seed=1", "lr=1"],
        ["model=a", "seed=2", "lr=1"],
    ]
    assert len(jobs) == 6 and jobs[-1] == ["model=b", "seed=2", "lr=1"]
    with pytest.raises(ValueError, match="not intervals"):
        grid(["lr=interval(1,3)"])


@pytest.mark.parametrize("seeds", [1, 2, 3])
def test_table2_waves_put_every_parent_one_wave_before_its_child(seeds):
    jobs = [(v, s) for v in TABLE2 for s in range(seeds)]  # the sweep's order: model outer, seed inner
    levels = waves([(v, TABLE2[v]) for v, _ in jobs])
    wave_of = {jobs[i]: w for w, idx in enumerate(levels) for i in idx}
    assert sorted(i for idx in levels for i in idx) == list(range(len(jobs)))  # every job exactly once
    for (variant, seed), w in wave_of.items():
        parent = TABLE2[variant]
        assert w == (0 if parent is None else wave_of[(parent, seed)] + 1)
    assert [sorted({jobs[i][0] for i in idx}) for idx in levels] == [
        ["fcn32s", "fcn32s_fixed"],
        ["fcn16s", "fcn32s_mid"],
        ["fcn32s_long", "fcn8s"],
    ]


def test_waves_of_jobs_without_stages_or_with_an_absent_parent_are_one_wave():
    assert waves([(None, None), (None, None)]) == [[0, 1]]
    assert waves([("fcn16s", "fcn32s")]) == [[0]]  # its parent ran in an earlier sweep: nothing to wait for
    assert waves([]) == []
    with pytest.raises(ValueError, match="loops"):
        waves([("a", "b"), ("b", "a")])
