"""selfsup.lib.drift: PSI, the fitted reference (determinism, JSON), the live monitor, and the
statistical contract on real data (scikit-learn's digits): few false alarms in distribution, alarms on shifts."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import threading

import numpy as np
import pytest

from selfsup.lib.drift import FORMAT, DriftMonitor, DriftReference, psi


def gaussian(rng: np.random.Generator, n: int, dim: int = 8, shift: float = 0.0) -> np.ndarray:
    return rng.standard_normal((n, dim)) + shift


@pytest.fixture(scope="module")
def ref8() -> DriftReference:
    """A reference of 8-D standard Gaussians (window 128, min_window 32, 300 calibration windows: fast)."""
    rng = np.random.default_rng(0)
    return DriftReference.fit(gaussian(rng, 2000), window=128, min_window=32, n_windows=300, seed=0)


# ---------------------------------------------------------------------------------------------- psi


def test_psi_hand_computed():
    # (0.5 - 0.25) ln(0.5 / 0.25) + 0 + (0.25 - 0.5) ln(0.25 / 0.5) = 0.5 ln 2
    assert psi([0.25, 0.25, 0.5], [0.5, 0.25, 0.25]) == pytest.approx(0.5 * math.log(2), abs=1e-12)
    assert psi([0.2] * 5, [0.2] * 5) == 0.0
    # an empty bin counts as the floor: (0.25 - 1e-4) ln(0.25 / 1e-4) + (0.25 - 0.5) ln(0.25 / 0.5)
    want = (0.25 - 1e-4) * math.log(0.25 / 1e-4) + (0.25 - 0.5) * math.log(0.25 / 0.5)
    assert psi([0.5, 0.5, 0.0], [0.5, 0.25, 0.25]) == pytest.approx(want, abs=1e-12)
    assert psi([0.5, 0.5, 0.0], [0.5, 0.25, 0.25], floor=1e-2) < want
    batch = psi([[0.25, 0.25, 0.5], [0.2, 0.3, 0.5]], [[0.5, 0.25, 0.25], [0.2, 0.3, 0.5]])
    np.testing.assert_allclose(batch, [0.5 * math.log(2), 0.0], atol=1e-12)
    with pytest.raises(ValueError, match="bins"):
        psi([0.5, 0.5], [0.2, 0.3, 0.5])


def test_score_is_the_documented_psi(ref8):
    """Recompute a window's score from the reference's own parts: quantile bins of the statistics, nearest
    centroid, proportions shrunk towards the reference's, PSI per statistic, weighted mean of the families."""
    z = gaussian(np.random.default_rng(5), 100, shift=0.3)
    stats = np.concatenate([z @ ref8.projections, np.linalg.norm(z, axis=1)[:, None],
                            np.linalg.norm(z - ref8.center, axis=1)[:, None]], axis=1)
    np.testing.assert_allclose(ref8.statistics(z), stats)
    cells = ((z[:, None, :] - ref8.centroids[None]) ** 2).sum(-1).argmin(1)
    np.testing.assert_array_equal(ref8.cells(z), cells)
    per = []
    for s in range(ref8.n_statistics):
        idx = cells if s == ref8.n_statistics - 1 else np.searchsorted(ref8.edges[s], stats[:, s], side="right")
        q = ref8.expected[s]
        p = (np.bincount(idx, minlength=ref8.bins) + ref8.smoothing * q) / (len(z) + ref8.smoothing)
        per.append(psi(q, p))
    np.testing.assert_allclose(ref8.psi_per_statistic(z), per, rtol=1e-12)
    assert ref8.weights == (0.7, 0.15, 0.15)
    want = 0.7 * np.mean(per[:-3]) + 0.15 * np.mean(per[-3:-1]) + 0.15 * per[-1]
    assert ref8.score(z) == pytest.approx(want, rel=1e-12)
    assert ref8.statistic_names[-3:] == ["norm", "distance", "cell"] and len(ref8.statistic_names) == 35


def test_identical_distribution_scores_near_zero(ref8):
    rng = np.random.default_rng(1)
    same = ref8.score(gaussian(rng, 20_000))
    shifted = ref8.score(gaussian(rng, 20_000, shift=0.5))
    assert same < 0.01 < 0.1 < shifted
    # and a window of the calibrated size stays under its threshold most of the time
    scores = [ref8.score(gaussian(rng, 128)) for _ in range(50)]
    assert np.mean(np.array(scores) > ref8.threshold) <= 0.04


def test_calibration_record(ref8):
    cal = ref8.calibration
    assert cal["window"] == ref8.window == 128 and cal["min_window"] == ref8.min_window == 32
    assert cal["n_windows"] == 300 and cal["false_alarm"] == 0.01 and cal["seed"] == 0
    assert (cal["n_fit"], cal["n_calibration"], cal["n_test"]) == (800, 800, 400)
    assert sorted(ref8.thresholds) == [32, 64, 128]
    # smaller windows are noisier: higher thresholds
    assert ref8.thresholds[32] > ref8.thresholds[64] > ref8.thresholds[128] > 0
    assert set(cal["measured_false_alarm"]) == {"32", "64", "128"}
    assert all(0.0 <= v <= 0.05 for v in cal["measured_false_alarm"].values())
    assert ref8.threshold_for(31) is None
    assert ref8.threshold_for(32) == ref8.threshold_for(63) == ref8.thresholds[32]
    assert ref8.threshold_for(128) == ref8.threshold_for(10_000) == ref8.threshold
    assert "DriftReference(dim=8" in repr(ref8)


def test_seeded_and_deterministic():
    x = gaussian(np.random.default_rng(2), 1000)
    a = DriftReference.fit(x, n_windows=100, seed=7)
    b = DriftReference.fit(x, n_windows=100, seed=7)
    c = DriftReference.fit(x, n_windows=100, seed=8)
    assert a.to_dict() == b.to_dict()
    assert a.to_dict() != c.to_dict()
    z = gaussian(np.random.default_rng(3), 200)
    assert a.score(z) == b.score(z)


def test_json_round_trip_gives_identical_scores(ref8, tmp_path):
    text = json.dumps(ref8.to_dict(), allow_nan=False)  # plain lists and floats
    data = json.loads(text)
    assert data["format"] == FORMAT and data["dim"] == 8 and data["bins"] == 10
    back = DriftReference.from_dict(data)
    z = gaussian(np.random.default_rng(4), 150, shift=0.2)
    assert back.score(z) == ref8.score(z)
    np.testing.assert_array_equal(back.psi_per_statistic(z), ref8.psi_per_statistic(z))
    assert back.thresholds == ref8.thresholds and back.calibration == ref8.calibration
    path = ref8.save(tmp_path / "drift.json")
    assert [p.name for p in tmp_path.iterdir()] == ["drift.json"]  # no temporary file left behind
    loaded = DriftReference.load(path)
    assert loaded.to_dict() == ref8.to_dict() and loaded.score(z) == ref8.score(z)
    with pytest.raises(ValueError, match="format"):
        DriftReference.from_dict({**data, "format": "selfsup.drift/0"})
    with pytest.raises(ValueError, match="missing"):
        DriftReference.from_dict({k: v for k, v in data.items() if k != "centroids"})
    with pytest.raises(ValueError, match="inconsistent"):
        DriftReference.from_dict({**data, "center": [0.0] * 7})


def test_margin_and_is_drift(ref8):
    x = gaussian(np.random.default_rng(2), 1000)
    plain = DriftReference.fit(x, n_windows=100, seed=3)
    wide = DriftReference.fit(x, n_windows=100, seed=3, margin=0.5)
    for n, t in plain.thresholds.items():
        assert wide.thresholds[n] == pytest.approx(1.5 * t, rel=1e-12)
    rng = np.random.default_rng(12)
    assert ref8.is_drift(gaussian(rng, 128)) is False
    assert ref8.is_drift(gaussian(rng, 128, shift=1.0)) is True
    assert ref8.is_drift(gaussian(rng, 31, shift=1.0)) is None  # below min_window
    # a monitor wider than the calibrated window uses the calibrated window's threshold
    wider = DriftMonitor(ref8, window=512, every=64)
    wider.add(gaussian(rng, 512))
    assert wider.threshold == ref8.threshold and wider.state()["window_rows"] == 512


def test_explicit_calibration_split():
    rng = np.random.default_rng(6)
    ref = DriftReference.fit(gaussian(rng, 300), calibration=gaussian(rng, 600), window=64, n_windows=100, seed=0)
    cal = ref.calibration
    assert (cal["n_fit"], cal["n_calibration"], cal["n_test"]) == (300, 400, 200)
    assert sorted(ref.thresholds) == [64]


def test_constant_statistic_is_handled():
    """L2-normalised embeddings have a constant norm: that statistic gets below / at / above bins and stays
    quiet, until the norm changes."""
    rng = np.random.default_rng(7)
    x = gaussian(rng, 1500)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    ref = DriftReference.fit(x, window=128, n_windows=200, seed=0)
    norm = ref.statistic_names.index("norm")
    z = gaussian(rng, 128)
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    assert ref.psi_per_statistic(z.astype(np.float32))[norm] < 0.01  # float32 rounding of the norm is no drift
    assert ref.psi_per_statistic(z * 1.01)[norm] > 1.0


# ---------------------------------------------------------------------------------------------- validation


def test_validation_errors(ref8):
    rng = np.random.default_rng(8)
    with pytest.raises(ValueError, match="needs at least 320 finite reference rows"):
        DriftReference.fit(gaussian(rng, 319))
    with pytest.raises(ValueError, match=r"needs at least 320 .* got 300 \(20 non-finite rows skipped\)"):
        x = gaussian(rng, 320)
        x[:20, 3] = np.nan
        DriftReference.fit(x)
    with pytest.raises(ValueError, match="needs at least 100 finite reference rows to fit 10 bins"):
        DriftReference.fit(gaussian(rng, 99), calibration=gaussian(rng, 500))
    with pytest.raises(ValueError, match="needs at least 192 finite calibration rows"):
        DriftReference.fit(gaussian(rng, 500), calibration=gaussian(rng, 150))
    with pytest.raises(ValueError, match="calibration: embeddings have 5 dimensions; the reference has 8"):
        DriftReference.fit(gaussian(rng, 500), calibration=gaussian(rng, 500, dim=5))
    with pytest.raises(ValueError, match="2-D"):
        DriftReference.fit(np.zeros(100))
    with pytest.raises(ValueError, match="min_window"):
        DriftReference.fit(gaussian(rng, 1000), window=32, min_window=64)
    with pytest.raises(ValueError, match="split"):
        DriftReference.fit(gaussian(rng, 1000), split=(0.5, 0.5))
    with pytest.raises(ValueError, match="embeddings have 5 dimensions; the reference has 8"):
        ref8.score(gaussian(rng, 50, dim=5))
    with pytest.raises(ValueError, match="no finite rows"):
        ref8.score(np.full((4, 8), np.inf))
    with pytest.raises(ValueError, match="embeddings have 5 dimensions"):
        DriftMonitor(ref8).add(gaussian(rng, 3, dim=5))
    with pytest.raises(ValueError, match="below the smallest calibrated window"):
        DriftMonitor(ref8, min_window=8)
    # non-finite reference rows are skipped and counted
    x = gaussian(rng, 1000)
    x[::100, 0] = np.inf
    assert DriftReference.fit(x, n_windows=50).calibration["skipped_rows"] == 10


# ---------------------------------------------------------------------------------------------- monitor


def test_monitor_window_and_every(ref8):
    rng = np.random.default_rng(9)
    monitor = DriftMonitor(ref8, every=16, history=5)
    assert (monitor.window, monitor.min_window) == (128, 32)
    assert monitor.add(gaussian(rng, 31)) is None and monitor.score() is None and not monitor.alert
    assert monitor.threshold is None
    first = monitor.add(gaussian(rng, 1))  # min_window reached: scored at once
    assert first is not None and monitor.threshold == ref8.thresholds[32] and len(monitor.history) == 1
    assert monitor.add(gaussian(rng, 15)) == first  # fewer than `every` new rows: the same score
    assert monitor.add(gaussian(rng, 1)) != first and len(monitor.history) == 2  # 16 new rows: rescored
    assert monitor.threshold == ref8.thresholds[32]  # 48 rows: the 32-row threshold
    monitor.add(gaussian(rng, 16))
    assert monitor.threshold == ref8.thresholds[64]
    # sliding: after many rows the score is the reference's score of exactly the last 128 rows
    rows = gaussian(rng, 400, shift=0.4)
    for start in range(0, 400, 20):
        monitor.add(rows[start:start + 20])
    assert monitor.score(fresh=True) == pytest.approx(ref8.score(rows[-128:]), rel=1e-12)
    assert monitor.alert and monitor.state()["alert"] and monitor.threshold == ref8.threshold
    assert len(monitor.history) == 5  # bounded
    t, score, seen = monitor.history[-1]
    assert score == monitor.score() and seen == monitor.seen == 32 + 15 + 1 + 16 + 400 and t > 1e9
    # one batch larger than the window keeps its last rows
    big = gaussian(rng, 300)
    monitor.add(big)
    assert monitor.score(fresh=True) == pytest.approx(ref8.score(big[-128:]), rel=1e-12)
    assert not monitor.alert
    monitor.reset()
    assert monitor.score() is None and monitor.seen == 0 and len(monitor.history) == 0
    one = monitor.add(gaussian(rng, 1)[0])  # a single [D] row
    assert one is None and monitor.seen == 1


def test_monitor_skips_and_counts_nonfinite_rows(ref8):
    rng = np.random.default_rng(10)
    rows = gaussian(rng, 200)
    clean, dirty = DriftMonitor(ref8, every=1), DriftMonitor(ref8, every=1)
    for start in range(0, 200, 25):
        batch = rows[start:start + 25]
        clean.add(batch)
        poisoned = np.concatenate([batch[:10], np.full((3, 8), np.nan), batch[10:]])
        poisoned[11, 2] = np.inf
        poisoned[12, 5] = 1e300  # finite, but its norm overflows
        dirty.add(poisoned)
    assert dirty.nonfinite == 3 * 8 and clean.nonfinite == 0
    assert dirty.seen == clean.seen == 200
    assert dirty.score() == clean.score()
    state = dirty.state()
    assert state["nonfinite"] == 24 and state["window_rows"] == 128 and state["score"] == dirty.score()
    assert set(state) == {"score", "max_statistic_psi", "threshold", "alert", "window_rows", "window", "seen",
                          "nonfinite"}
    assert dirty.add(np.full((5, 8), np.nan)) == dirty.score() and dirty.nonfinite == 29


def test_monitor_is_thread_safe(ref8):
    monitor = DriftMonitor(ref8, every=8)

    def feed(seed: int) -> None:
        rng = np.random.default_rng(seed)
        for _ in range(50):
            monitor.add(gaussian(rng, 4))
            monitor.state()

    threads = [threading.Thread(target=feed, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert monitor.seen == 4 * 50 * 4
    assert monitor.state()["window_rows"] == 128 and monitor.score() is not None


def test_imports_no_torch():
    code = "import sys, selfsup.lib.drift; print(sorted(m for m in ('torch', 'sklearn', 'scipy') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------------------------------------- statistics


def detection_rate(ref: DriftReference, pool: np.ndarray, window: int, n: int, rng: np.random.Generator) -> float:
    """Share of ``n`` windows of ``window`` rows from ``pool`` (without replacement when it is large enough)
    that cross the reference's threshold."""
    hits = 0
    for _ in range(n):
        idx = rng.choice(len(pool), size=window, replace=len(pool) < window)
        hits += ref.score(pool[idx]) > ref.threshold_for(window)
    return hits / n


def test_gaussian_shifts_are_detected():
    rng = np.random.default_rng(11)
    ref = DriftReference.fit(gaussian(rng, 3000, dim=16), window=256, n_windows=500, seed=1)
    assert detection_rate(ref, gaussian(rng, 5000, dim=16), 256, 200, rng) <= 0.02
    assert detection_rate(ref, gaussian(rng, 5000, dim=16, shift=0.3), 256, 200, rng) >= 0.95  # mean
    assert detection_rate(ref, gaussian(rng, 5000, dim=16) * 1.15, 256, 200, rng) >= 0.95  # scale


@pytest.fixture(scope="module")
def digits():
    """scikit-learn's 8x8 digits: a seeded 1200-image training split, the rest held out; features are the
    pixels standardised by the training split, projected by a fixed random matrix to 32 dimensions."""
    datasets = pytest.importorskip("sklearn.datasets")
    images, labels = datasets.load_digits(return_X_y=True)
    images = images.astype(np.float64)
    order = np.random.default_rng(0).permutation(len(images))
    train, held = order[:1200], order[1200:]
    mean, std = images[train].mean(0), images[train].std(0)
    std = np.where(std > 1e-6, std, 1.0)
    matrix = np.random.default_rng(1).standard_normal((64, 32)) / 8.0

    def features(x: np.ndarray) -> np.ndarray:
        return ((x - mean) / std) @ matrix

    return features, images[train], images[held], labels[held]


@pytest.mark.parametrize("window", [64, 256])
def test_digits_false_alarms_and_shifts(digits, window):
    """Real data: held-out in-distribution windows stay under the threshold (<= 2% over 200 windows);
    inverted, noisy, rotated and class-subset (only 0 and 1) streams cross it in >= 95% of windows."""
    features, train, held, labels = digits
    ref = DriftReference.fit(features(train), window=window, min_window=min(64, window), seed=0)
    rng = np.random.default_rng(window)
    assert detection_rate(ref, features(held), window, 200, rng) <= 0.02
    shifts = {
        "inverted": 16.0 - held,
        "noise": np.clip(held + rng.normal(0.0, 2.0, held.shape), 0.0, 16.0),
        "rotated": np.rot90(held.reshape(-1, 8, 8), axes=(1, 2)).reshape(-1, 64),
        "only 0 and 1": held[labels <= 1],
    }
    for name, images in shifts.items():
        rate = detection_rate(ref, features(images), window, 100, rng)
        assert rate >= 0.95, f"{name}: detected in {rate:.0%} of windows"
    # the monitor, fed a live stream: quiet in distribution, alarmed once the stream turns
    monitor = DriftMonitor(ref, every=16)
    stream = features(held[rng.permutation(len(held))])
    alerts = [(monitor.add(stream[i:i + 8]), monitor.alert)[1] for i in range(0, len(stream), 8)]
    assert not any(alerts)
    turned = features(16.0 - held[:window])
    for i in range(0, window, 8):
        monitor.add(turned[i:i + 8])
    assert monitor.alert
