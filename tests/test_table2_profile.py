"""``debug=profile`` (``make table2-profile``): Lightning's profiler says where a Table 2 row's time goes."""

from __future__ import annotations

import pytest

from fcnlab.training.run import train
from test_train import make_cfg, tiny_overrides


@pytest.mark.slow
def test_debug_profile_writes_where_a_rows_time_goes(tiny_data, tmp_path):
    limits = ("trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=2")
    overrides = tiny_overrides(tiny_data, "model=fcn32s", "debug=profile", *limits)
    results = train(make_cfg("table2", overrides, tmp_path))
    assert results["status"] == "ok"  # the run itself is the configured one, profiled
    table = (tmp_path / "fit-profile.txt").read_text()
    for action in ("train_dataloader_next", "training_step", "backward", "optimizer_step", "validation_step"):
        assert action in table, action  # the stages docs/performance.md reads off this table
    assert "save_checkpoint" in table and (tmp_path / "validate-profile.txt").is_file()
