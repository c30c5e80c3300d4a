"""The shipped ``simclr-digits-rounds`` recipe (docs/autonomous.md), shortened: three rounds run, the
core's ``pseudo_labels`` feedback labels the training digits far above chance after each, the
pseudo-label task trains only from round 1 on, and the saved results are in the run directory."""

from __future__ import annotations

import json

import selfsup


def test_simclr_digits_rounds_runs_its_rounds(tmp_path, one_thread, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = selfsup.train("simclr-digits-rounds", [
        "train.epochs=", "train.max_steps=12", "train.batch_size=64", "train.workers=0", "train.warmup_steps=2",
        "train.tensorboard=false", "train.log_every=1", "backbones.cnn.options.widths=[16, 32]",
        f'output_dir="{tmp_path / "run"}"',
    ])
    assert run.status == "completed" and run.step == 12

    records = run.history
    rounds = [r for r in records if r["kind"] == "round"]
    assert [r["step"] for r in rounds] == [4, 8]
    for record in rounds:
        # 30 pseudo-classes of the training digits, against true labels read only to measure:
        # 30 clusters drawn at random give NMI 0.03 and purity 0.17
        assert record["feedback/clusters_used"] == 30
        assert record["feedback/nmi_labels"] > 0.4 and record["feedback/purity"] > 0.5, record
    assert 0 <= rounds[1]["feedback/changed"] < 1
    trained = [r for r in records if r["kind"] == "train"]
    assert not any("loss/pseudo" in r for r in trained if r["step"] <= 4)  # round 0: SimCLR only
    assert all("loss/pseudo" in r for r in trained if r["step"] > 4)
    meta = json.loads((tmp_path / "run" / "rounds" / "1" / "feedback.json").read_text())
    assert meta["feedback"]["type"] == "pseudo_labels" and meta["fields"]["pseudo_label"]["shape"] == [1438]
    assert run.metrics["knn/accuracy"] > 0.5
