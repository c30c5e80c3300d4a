"""The training loop logs ``data_wait_share``: the share of each logging window spent waiting for the next batch."""

from __future__ import annotations

import time

from conftest import write_toy_recipe

from selfsup.engine.data import TaskStream
from selfsup.engine.loop import train
from selfsup.engine.metrics import read_metrics
from selfsup.plugins import get_plugin_manager
from selfsup.recipe import load_recipe


def _shares(tmp_path) -> list[float]:
    pm = get_plugin_manager()
    result = train(load_recipe(str(write_toy_recipe(tmp_path, max_steps=12, log_every=4)), pm.registry), pm,
                   progress=False)
    records = [r for r in read_metrics(result.run_dir) if r["kind"] == "train"]
    assert [r["step"] for r in records] == [4, 8, 12]
    assert "samples_per_s" in records[0]
    return [r["data_wait_share"] for r in records]


def test_data_wait_share_is_logged_beside_the_throughput(tmp_path):
    shares = _shares(tmp_path)
    assert all(0.0 <= s <= 1.0 for s in shares), shares


def test_a_slow_data_loader_shows_as_a_high_data_wait_share(tmp_path, monkeypatch):
    (tmp_path / "fast").mkdir(), (tmp_path / "slow").mkdir()
    fast = _shares(tmp_path / "fast")
    batch = TaskStream.__next__

    def slow(self):
        time.sleep(0.05)  # far longer than a toy step (well under 5 ms)
        return batch(self)

    monkeypatch.setattr(TaskStream, "__next__", slow)
    shares = _shares(tmp_path / "slow")
    assert all(0.5 < s <= 1.0 for s in shares), shares
    assert max(fast[1:]) < min(shares), (fast, shares)
