"""``fcnlab-bench --table2-profile``: the stage clock, and one real (tiny) Table 2 row profiled end to end.

No timing is asserted: what is checked is that every second of the row's process lands in exactly
one stage, that the stages are the ones the row went through (batches, checkpoints, validation),
and that they agree with the job's own ``results.json`` clock.
"""

from __future__ import annotations

import json

import pytest

from fcnlab.bench import stage_profiler as sp
from fcnlab.bench.stages import StageClock
from fcnlab.bench.table2_profile import EXIT, summarize
from fcnlab.cli.bench import main


def test_stage_clock_charges_every_second_to_one_stage():
    clock = StageClock("a", start=0.0)
    clock.switch("b", 1.0)
    clock.push("c", 3.0)  # c inside b
    clock.push("d", 3.5)
    clock.pop(4.0)  # back to c
    clock.pop(5.0)  # back to b
    clock.pop(5.5)  # nothing pushed: stays b
    clock.switch("a", 6.0)
    clock.stop(10.0)
    record = clock.record()
    seconds = {s["stage"]: s["seconds"] for s in record["stages"]}
    assert seconds == {"a": 1.0 + 4.0, "b": 2.0 + 1.0, "c": 0.5 + 1.0, "d": 0.5}
    assert sum(seconds.values()) == record["end_monotonic"] - record["start_monotonic"] == 10.0
    assert {s["stage"]: s["entries"] for s in record["stages"]} == {"a": 2, "b": 2, "c": 2, "d": 1}
    assert [s["stage"] for s in record["stages"]] == ["a", "b", "c", "d"]  # first entered first


def test_summary_lists_every_stage_and_the_exit():
    raw = {
        "start_monotonic": 100.0,
        "end_monotonic": 109.0,
        "stages": [
            {"stage": sp.PYTHON, "seconds": 1.0, "entries": 1},
            {"stage": sp.FORWARD, "seconds": 8.0, "entries": 4},
        ],
        "train_batches": 4,
    }
    record = summarize(raw, 100.0, 110.0)
    names = [s["stage"] for s in record["stages"]]
    assert names == [*sp.STAGES, EXIT]
    by = {s["stage"]: s for s in record["stages"]}
    assert by[EXIT]["seconds"] == pytest.approx(1.0) and by[sp.FORWARD]["share"] == pytest.approx(0.8)
    assert by[sp.BACKWARD]["seconds"] == 0.0 and by[sp.BACKWARD]["entries"] == 0
    assert sum(s["share"] for s in record["stages"]) == pytest.approx(1.0)


@pytest.mark.slow
def test_a_tiny_row_profiled_end_to_end(tiny_data, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "profile.json"
    epochs, batches, val_batches = 2, 3, 2
    overrides = [
        f"data.root={tiny_data}",
        "data.generate=null",
        "model.pretrained=null",
        "data.num_workers=1",
        "data.batch_size=4",
        "trainer.log_every_n_steps=1",
        f"trainer.limit_train_batches={batches}",
        f"trainer.limit_val_batches={val_batches}",
        "trainer.enable_progress_bar=false",
    ]
    argv = ["--table2-profile", "--model", "fcn32s", "--epochs", str(epochs), "--out", str(out)]
    argv += ["--profile-dir", str(tmp_path / "profile"), "--sweep-dir", str(tmp_path / "runs" / "none")]
    main(argv + [a for o in overrides for a in ("--override", o)])
    printed = capsys.readouterr().out
    record = json.loads(out.read_text())

    by = {s["stage"]: s for s in record["stages"]}
    assert list(by) == [*sp.STAGES, EXIT]
    for stage in sp.STAGES:
        assert f"| {stage} |" in printed
        if stage != sp.FINAL_VAL or record.get("val_batches"):
            assert by[stage]["seconds"] > 0, stage  # every stage of the row was seen and clocked
    assert by[sp.FORWARD]["entries"] == by[sp.BACKWARD]["entries"] == epochs * batches
    assert record["train_batches"] == record["optimizer_steps"] == epochs * batches
    assert record["val_batches"] == epochs * val_batches  # the final re-validation is its own stage
    assert by[sp.CHECKPOINT]["entries"] >= epochs + 1  # last.ckpt each epoch, best.ckpt when it improves
    assert record["max_epochs"] == epochs and record["cpu_model"] and record["cores"] >= 1

    wall = record["wall_seconds"]
    assert sum(s["seconds"] for s in record["stages"]) == pytest.approx(wall, rel=1e-6)
    assert abs(record["clock_start_offset"]) < 1e-6  # the child's clock starts at the parent's t0
    # The record is written by the last exit handler: only the interpreter's teardown follows it
    # (freeing torch and the loaded libraries: about 2 s on a loaded 2-core machine). Clocked, not
    # bounded: a bound would be a timing check, which depends on the machine and its load.
    assert by[EXIT]["seconds"] >= 0
    # The job's own clock (train() start to results.json) lies inside the stages from the config on.
    job = json.loads((tmp_path / "profile" / "fcn32s_seed0" / "results.json").read_text())["wall_seconds"]
    from_build = sp.STAGES[sp.STAGES.index(sp.BUILD) :]
    assert job <= sum(by[s]["seconds"] for s in from_build) + 0.2
    assert job >= sum(by[s]["seconds"] for s in from_build if s not in (sp.BUILD, sp.AFTER_FIT)) - 0.2
