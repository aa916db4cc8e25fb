"""Detector behaviour on synthetic streams, bounded memory, multichannel."""

from __future__ import annotations

import math
import random

import pytest

from edge_runtime.anomaly import AnomalyDetector, DetectorConfig, MultiChannelDetector


def _run(values: list[float], det: AnomalyDetector | None = None) -> list[float]:
    det = det or AnomalyDetector()
    return [det.update(300.0 * i, v) for i, v in enumerate(values)]


def _noise(n: int, seed: int = 1) -> list[float]:
    rng = random.Random(seed)
    return [rng.gauss(10.0, 1.0) for _ in range(n)]


def test_scores_in_unit_interval_and_zero_in_warmup() -> None:
    scores = _run(_noise(3000))
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert max(scores[: DetectorConfig().warmup_points]) == 0.0


def test_spike_is_flagged_at_the_spike() -> None:
    values = _noise(2000)
    values[1500] = 40.0
    scores = _run(values)
    assert scores[1500] >= 0.5
    assert max(scores[1000:1500]) < scores[1500]


def test_level_shift_flagged_within_a_few_points() -> None:
    values = _noise(1500) + [v + 12.0 for v in _noise(500, seed=2)]
    scores = _run(values)
    assert max(scores[1500:1505]) >= 0.5


def test_slow_drift_eventually_flagged_but_not_every_point() -> None:
    values = [v + 0.02 * max(0, i - 1000) for i, v in enumerate(_noise(3000))]
    scores = _run(values)
    alarms = [i for i, s in enumerate(scores) if s >= 0.3]
    before, after = [i for i in alarms if i < 1000], [i for i in alarms if i >= 1000]
    assert len(before) <= 2  # noise tails just after warm-up may alarm once or twice
    assert after and after[0] < 1400  # 8 noise sigmas of drift
    assert len(after) < 40  # rest period: one alarm per episode, not one per point


def test_daily_seasonality_is_learnt() -> None:
    # 5-minute samples: 288 per day; after a few days the cycle is familiar
    values = [10 + 5 * math.sin(2 * math.pi * i / 288) + r for i, r in enumerate(_noise(288 * 20))]
    values = [v - 10.0 for v in values]
    scores = _run(values)
    assert max(scores[288 * 5 :]) < 0.3


def test_flat_line_where_the_signal_used_to_move() -> None:
    # a 4-hour cycle at 5-minute samples, then the sensor sticks at mid-level
    values = [5 * math.sin(2 * math.pi * i / 48) + 0.1 * r for i, r in enumerate(_noise(48 * 40))]
    values += [0.05] * 200
    det = AnomalyDetector()
    raw = []
    for i, v in enumerate(values):
        det.update(300.0 * i, v)
        raw.append(det.last_raw)
    # pattern novelty only (values stay in range): the raw score rises, but context
    # novelty alone stays below the alarm level by design (it is at most
    # context_weight); the ``stuck`` signal is what catches a frozen sensor
    flat = raw[48 * 40 : 48 * 40 + 20]
    assert max(flat) > 0.1
    assert max(flat) < DetectorConfig().alarm_level


def test_stuck_flags_a_frozen_sensor_but_not_a_constant_or_noisy_one() -> None:
    det = AnomalyDetector()
    stuck = []
    values = [5 * math.sin(2 * math.pi * i / 48) + 0.1 * r for i, r in enumerate(_noise(48 * 40))]
    values += [0.05] * 200  # the sensor freezes mid-range
    for i, v in enumerate(values):
        det.update(300.0 * i, v)
        stuck.append(det.stuck)
    frozen = 48 * 40
    assert not any(stuck[:frozen])
    onset = stuck.index(True)
    assert frozen + det.config.stuck_points - 1 <= onset <= frozen + 20
    assert all(stuck[onset:])
    assert det.flat_run >= 199
    det.update(300.0 * len(values), 3.0)  # it moves again
    assert not det.stuck and det.flat_run == 0
    # A channel that never moved is constant, not stuck; noise never stays flat.
    const = AnomalyDetector()
    _run([3.0] * 2000, const)
    assert not const.stuck
    noisy = AnomalyDetector()
    flags = []
    for i, v in enumerate(_noise(3000)):
        noisy.update(300.0 * i, v)
        flags.append(noisy.stuck)
    assert not any(flags)


def test_constant_stream_never_alarms_and_nan_is_ignored() -> None:
    det = AnomalyDetector()
    scores = _run([3.0] * 2000, det)
    assert max(scores) == 0.0
    seen = det.points_seen
    assert det.update(1e9, math.nan) == 0.0
    assert det.points_seen == seen


def test_missing_points_do_not_alarm() -> None:
    det = AnomalyDetector()
    values = _noise(3000)
    scores = [det.update(300.0 * i, v) for i, v in enumerate(values) if i % 7 != 3]
    assert max(scores[500:]) < 0.5


def test_memory_bounded_over_a_long_drifting_stream() -> None:
    det = AnomalyDetector()
    rng = random.Random(3)
    sizes = []
    for i in range(60_000):
        det.update(float(i), 0.05 * i + rng.gauss(0, 1) + (50 if i % 997 == 0 else 0))
        if i % 10_000 == 9_999:
            sizes.append(det.state_bytes())
    assert max(sizes) <= 64 * 1024
    assert sizes[-1] <= sizes[1] * 1.05


def test_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="levels"):
        DetectorConfig(levels=0)
    with pytest.raises(ValueError, match="rebin_bins"):
        DetectorConfig(rebin_bins=1)
    with pytest.raises(ValueError, match="pattern_min_grids"):
        DetectorConfig(pattern_grids=4, pattern_min_grids=5)
    with pytest.raises(ValueError, match="pattern_order"):
        DetectorConfig(pattern_order=1)


def test_multichannel_takes_the_worst_axis() -> None:
    det = MultiChannelDetector(["x", "y", "z"])
    xs, ys, zs = _noise(1200, 1), _noise(1200, 2), _noise(1200, 3)
    zs[1100] = 60.0
    scores = []
    for i, xyz in enumerate(zip(xs, ys, zs, strict=True)):
        scores.append(det.update(float(i), xyz))
        assert scores[-1] == max(det.last_scores.values())
        if i == 1100:
            # the raw score sees the spike even if an earlier alarm's rest period hides it
            assert det.detector("z").last_raw >= 0.5
    with pytest.raises(ValueError, match="3 channels"):
        det.update(0.0, (1.0, 2.0))
    with pytest.raises(KeyError, match="unknown channel"):
        det.update(0.0, {"w": 1.0})


def test_strong_spike_breaks_through_the_rest_period() -> None:
    values = _noise(2000)
    values[1500] = 13.5  # a modest excursion: alarms and starts a rest period
    values[1520] = 60.0  # a much stronger spike inside that rest period
    cfg = DetectorConfig(breakthrough=0.3)
    scores = _run(values, AnomalyDetector(cfg))
    assert scores[1500] >= cfg.alarm_level
    assert max(scores[1501:1520]) == 0.0  # resting
    # relative: it closes 30 % of the gap between the first alarm and 1
    assert scores[1520] > scores[1500] + cfg.breakthrough * (1.0 - scores[1500])
    # without the breakthrough the spike is hidden (the old weakness)
    hidden = _run(values, AnomalyDetector(DetectorConfig(breakthrough=1.0)))
    assert hidden[1520] == 0.0


def test_warmup_is_replayed_so_early_points_are_not_novel() -> None:
    # a staircase the warm-up already went through: without the replay the first scored
    # steps found an empty memory and scored ~1
    values = [(i // 20) % 5 + 0.01 * r for i, r in enumerate(_noise(800))]
    scores = _run(values)
    assert max(scores[300:]) < 0.5


def test_clock_follows_elapsed_time_when_points_are_skipped() -> None:
    # After an alarm the rest period lasts 30 ticks of the nominal interval. Reading
    # every 3rd point, 11 reads are 33 ticks: the rest is over (counting reads, it would
    # not be); 9 reads are 27 ticks: still resting.
    cfg = DetectorConfig(rest_points=30, breakthrough=1.0)
    values = _noise(1200)
    for k, expect_alarm in ((9, False), (11, True)):
        det = AnomalyDetector(cfg)
        for i, v in enumerate(values):
            det.update(300.0 * i, v)
        assert det.interval_s == 300.0
        assert det.update(300.0 * 1200, 40.0) >= cfg.alarm_level
        for j in range(1, k):
            det.update(300.0 * (1200 + 3 * j), values[j])
        score = det.update(300.0 * (1200 + 3 * k), 80.0)
        assert (score >= cfg.alarm_level) == expect_alarm


def _flat_then_bursts() -> list[float]:
    # like ec2_disk_write_bytes: a warm-up of exact zeros, then short bursts of random
    # size every 120 points, and one burst ten times larger than any before at 3800
    rng = random.Random(3)
    values = [0.0] * 4000
    for start in range(400, 3600, 120):
        for j in range(rng.randint(2, 6)):
            values[start + j] = rng.uniform(1e6, 5e6)
    values[3800] = 5e7
    return values


def test_bins_widen_after_a_flat_warm_up_so_routine_bursts_stop_alarming() -> None:
    values = _flat_then_bursts()
    level = DetectorConfig().alarm_level
    det = AnomalyDetector()
    scores = _run(values, det)
    # the warm-up width (1e-9) was far too fine: it grew to the scale of the bursts
    assert det._width > 1e4
    assert len(det._bins) <= DetectorConfig().rebin_bins
    assert [i for i in range(2000, 3700) if scores[i] >= level] == []
    assert scores[3800] >= 0.5  # a really larger burst is still new
    # with the warm-up width kept, every burst keeps reaching unseen bins
    fixed = _run(values, AnomalyDetector(DetectorConfig(rebin_bins=0)))
    assert sum(s >= level for s in fixed[2000:3700]) >= 5


def test_bin_budget_leaves_a_well_scaled_channel_alone() -> None:
    det = AnomalyDetector()
    _run(_noise(3000), det)
    ref = AnomalyDetector(DetectorConfig(rebin_bins=0))
    _run(_noise(3000), ref)
    assert det._width == ref._width


def _calm_then_spike(envelope: bool) -> tuple[list[float], int]:
    """Read every 6th point of a calm noisy sine; one point between reads spikes."""
    import numpy as np

    rng = np.random.default_rng(3)
    n = 3000
    values = 10.0 + np.sin(np.arange(n) * 2 * np.pi / 288) + rng.normal(0, 0.05, n)
    spike_at = 2505  # between the reads at 2502 and 2508 (multiples of 6)
    values[spike_at] = 30.0
    det = AnomalyDetector(DetectorConfig(warmup_points=300))
    scores = []
    for i in range(300):  # warm-up at full rate
        det.update(i * 60.0, float(values[i]))
    last = 299
    for i in range(300, n):
        if i % 6:
            continue
        window = values[last + 1:i + 1]
        env = (float(window.min()), float(window.max())) if envelope else None
        scores.append(det.update(i * 60.0, float(values[i]), env))
        last = i
    return scores, (2508 - 300) // 6  # index of the read right after the spike


def test_envelope_shows_a_spike_that_fell_between_two_reads() -> None:
    with_env, k = _calm_then_spike(envelope=True)
    without, _ = _calm_then_spike(envelope=False)
    assert with_env[k] >= DetectorConfig().alarm_level  # the read after the spike alarms
    assert without[k] < DetectorConfig().alarm_level  # a plain read never saw it
    assert max(without[k - 5:k + 5]) < DetectorConfig().alarm_level


def test_degenerate_envelope_and_warm_up_envelope_change_nothing() -> None:
    plain = AnomalyDetector(DetectorConfig(warmup_points=20))
    enveloped = AnomalyDetector(DetectorConfig(warmup_points=20))
    for i in range(200):
        v = float(i % 7) + (40.0 if i == 150 else 0.0)
        a = plain.update(float(i), v)
        # During warm-up an envelope is ignored; after it, (v, v) adds no point.
        env = (v - 100.0, v + 100.0) if i < 20 else (v, v)
        assert enveloped.update(float(i), v, env) == a
    assert enveloped.points_seen == plain.points_seen == 200


def test_envelopes_at_the_full_rate_keep_the_clock_and_the_rest_period() -> None:
    """Reads one interval apart, each with an envelope: time must still pass once per
    read, so the rest period after an alarm lasts ``rest_points`` intervals (or
    ``rest_s`` of the channel's time: 150 intervals of 300 s here)."""
    import numpy as np

    rng = np.random.default_rng(5)
    values = 10.0 + rng.normal(0, 0.1, 2000)
    values[1000] = 30.0  # an alarm starts the rest period (150 intervals)
    values[1100] = -10.0  # novel too, but inside the rest period: suppressed
    values[1300] = -30.0  # after the rest period: alarms
    level = DetectorConfig().alarm_level
    for envelope in (False, True):
        det = AnomalyDetector(DetectorConfig(rest_s=150 * 300.0))
        scores = []
        for i, v in enumerate(values.tolist()):
            env = (v - 0.05, v + 0.05) if envelope and i > 0 else None
            scores.append(det.update(300.0 * i, v, env))
        alarms = [i for i, x in enumerate(scores) if x >= level]
        assert 1000 in alarms and 1300 in alarms, (envelope, alarms)
        assert 1100 not in alarms, (envelope, alarms)


@pytest.mark.parametrize("interval_s", [300.0, 3600.0])
def test_rest_period_is_elapsed_time_whatever_the_sampling_interval(interval_s: float) -> None:
    """12.5 h of rest: 150 five-minute points or 12 hourly ones, not 150 of either."""
    cfg = DetectorConfig(breakthrough=1.0)
    rest_ticks = int(cfg.rest_s / interval_s)
    values = _noise(400)
    values[200] = 40.0
    after = 200 + rest_ticks + 2
    values[after - 4] = -40.0  # inside the rest: hidden
    values[after] = -80.0  # just after it: alarms
    scores = _run_at(values, cfg, interval_s)
    assert scores[200] >= cfg.alarm_level
    assert scores[after - 4] == 0.0
    assert scores[after] >= cfg.alarm_level


def _run_at(values: list[float], cfg: DetectorConfig, interval_s: float) -> list[float]:
    det = AnomalyDetector(cfg)
    return [det.update(interval_s * i, v) for i, v in enumerate(values)]


def test_warm_up_ends_inside_a_short_series_probation() -> None:
    # 336 hourly points (two weeks): NAB scores from point 50; a spike at 60 is seen
    values = _noise(336)
    values[60] = 40.0
    scores = _run_at(values, DetectorConfig(), 3600.0)
    assert DetectorConfig().warmup_points < 50
    assert scores[60] >= DetectorConfig().alarm_level


def test_reported_score_is_the_alarm_decision() -> None:
    """Below the alarm level the reported score is 0 (the raw score is kept apart), so
    there is no band of near-threshold scores for a threshold sweep to exploit."""
    det = AnomalyDetector()
    level = det.config.alarm_level
    raws = []
    for i, v in enumerate(_noise(3000)):
        s = det.update(300.0 * i, v)
        assert s == 0.0 or s >= level
        raws.append(det.last_raw)
    assert any(0.0 < r < level for r in raws)  # the raw score does vary below it


def test_a_fast_channel_rests_for_its_own_intervals_not_for_hours() -> None:
    """A 10-s reading: an excursion soon after warm-up alarms; a fault one hour later
    must alarm too. The 12.5 h rest is capped at ``rest_max_intervals`` (25 min here),
    so it has ended; without the cap an early alarm hides the fault."""
    cfg = DetectorConfig(breakthrough=1.0)
    assert cfg.rest_max_intervals is not None
    values = _noise(800)
    values[200] = 16.0  # an early alarm starts a rest period
    values[560] = 40.0  # the fault, 1 h later
    capped = _run_at(values, cfg, 10.0)
    assert capped[200] >= cfg.alarm_level
    assert max(capped[201 : 200 + cfg.rest_max_intervals]) == 0.0  # resting meanwhile
    assert capped[560] >= cfg.alarm_level
    uncapped = _run_at(values, DetectorConfig(breakthrough=1.0, rest_max_intervals=None), 10.0)
    assert max(uncapped[:200]) >= cfg.alarm_level  # a noise tail alarms first ...
    assert uncapped[560] == 0.0  # ... and its 12.5 h rest hides the fault
    # at 5-minute sampling the cap does not bind: the rest is still 12.5 h (150 points)
    at_5_min = DetectorConfig(breakthrough=1.0, rest_max_intervals=None)
    assert _run_at(values, cfg, 300.0) == _run_at(values, at_5_min, 300.0)


def test_denser_spikes_alarm_through_the_block_pattern() -> None:
    """Spikes to a height seen every day, then every 20 minutes for a day: no value is
    new, but the blocks' means reach a sequence never seen (NAB's
    ``art_increase_spike_density``). Without block patterns nothing alarms that day."""
    day = 288
    values = _noise(day * 20)
    for i in range(100, day * 15, day):
        values[i] = 20.0
    start = day * 15
    for i in range(start, start + day, 4):
        values[i] = 20.0
    with_blocks = _run(values)
    without = _run(values, AnomalyDetector(DetectorConfig(pattern_points=0)))
    level = DetectorConfig().alarm_level
    assert max(with_blocks[start : start + day]) >= level
    assert max(without[start : start + day]) < level
    # before the change the two agree: the block patterns were learnt, not alarmed on
    assert with_blocks[day * 3 : start] == without[day * 3 : start]


def test_skipped_intervals_enter_block_means_at_the_envelope_midrange() -> None:
    """A read after 3 skipped intervals with a peak-hold envelope: the extreme is scored
    as a point, but in the block mean the skipped intervals count at the envelope's
    midrange, not at the extreme (which would push every block outward on a noisy
    channel) nor at the value read."""
    det = AnomalyDetector()
    for i in range(det.config.warmup_points):
        det.update(300.0 * i, 10.0 + (i % 3))
    t = 300.0 * (det.config.warmup_points - 1)
    det.update(t + 4 * 300.0, 10.0, envelope=(9.0, 13.0))
    assert det._pat_cnt == 4
    assert det._pat_sum == 10.0 + 3 * 11.0


def test_a_value_near_the_float_limit_alarms_instead_of_overflowing() -> None:
    """A sensor's garbage (1e308, -1.7e308, in a value or an envelope) raised an
    OverflowError inside the detector; it now scores as a far outlier, and the detector
    goes on catching ordinary anomalies afterwards."""
    from edge_runtime.anomaly import AnomalyDetector

    det = AnomalyDetector()
    t = 0.0
    for i in range(600):
        t += 60.0
        det.update(t, 20.0 + i % 5)
    scores = []
    for value in (1e308, -1.7e308):
        t += 60.0
        scores.append(det.update(t, value))
    t += 60.0
    det.update(t, 20.0, (20.0, 1.7e308))
    assert max(scores) >= det.config.alarm_level
    calm = []
    for i in range(2000):
        t += 60.0
        calm.append(det.update(t, 20.0 + i % 5))
    assert max(calm[500:]) == 0.0
    t += 60.0
    assert det.update(t, 60.0) >= det.config.alarm_level
