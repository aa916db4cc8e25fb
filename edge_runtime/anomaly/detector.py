"""Streaming anomaly detector for one scalar sensor channel, and its multichannel form.

:class:`AnomalyDetector` reads one point at a time (no look-ahead), learns online and
returns a score in [0, 1] per point. Its memory is fixed at construction (under 64 KB
per channel with the defaults) and each update is O(1) with plain Python arithmetic, so
one core scores well over 50,000 points per second.

How it scores (a value-novelty detector with context, in the spirit of NAB's
contextual detectors, written from the description of the problem):

1. **Warm-up.** The first ``warmup_points`` values (24: short enough to end inside
   NAB's probation of even a 336-point hourly series) set the quantisation (the bin
   width is their range divided by ``levels``) and the nominal sample interval (the
   median step between their timestamps). Scores are 0 during warm-up. When it ends,
   the buffered warm-up values are replayed into the seen-bin map and the context
   table, so the first scored points are compared with everything seen so far.
2. **Value novelty.** Each value falls into an integer bin (bins extend without bound,
   so a level shift or drift reaches new bins). If more than ``rebin_bins`` bins have
   been visited within the horizon, the warm-up width was too fine for this channel
   (a short or near-flat warm-up followed by bursts): the width doubles, neighbouring
   bins merge, until at most half of the budget remains, and the context table is
   relearnt from the last 512 points at the new width. A bin not visited within the
   horizon is novel; the novelty grows with the distance (in bins, up to
   ``distance_bins``) to the nearest recently visited bin. This catches spikes, dips,
   level shifts and values outside the learnt range.
3. **Context novelty.** The sequences of the last 2..``context_orders`` bins are
   hashed; the fraction of them not seen within the horizon measures a change of
   *pattern* over a few points (a flat line where the signal used to move).
4. **Block-pattern novelty.** Every ``pattern_points`` intervals (24) close a block;
   its mean is quantised into coarse cells (``pattern_coarse`` = 3.5 bins wide) on
   ``pattern_grids`` (8) grids shifted by an eighth of a cell each. A sequence of the
   last ``pattern_order`` (3) block cells never seen within the horizon, on at least
   ``pattern_min_grids`` (2) of the grids, is a change of the signal's shape at a scale
   the point contexts cannot see (a missing daily peak, a quiet holiday, denser spikes,
   a slow pre-failure drift inside the usual range). It counts only when the channel
   had gone ``pattern_quiet_blocks`` (16) blocks without such a novelty (a channel
   still meeting new shapes is still learning them), and then it is worth 1.
5. **Raw score** = the larger of ``(1 - context_weight) * value_novelty +
   context_weight * context_novelty`` and the block-pattern novelty, minus a running
   mean of itself, so a channel that is always a little novel (noisy) does not keep
   alarming (:attr:`AnomalyDetector.last_raw`).
6. **Alarm decision.** A point alarms when its score reaches ``alarm_level``, which
   sits between the score's discrete levels: it needs a value away from every bin
   seen or a novel block pattern (context novelty alone, at most ``context_weight =
   0.3``, never alarms).
   The reported score is that score for an alarm and 0 otherwise, so the detector's
   decision *is* its output: no band of near-threshold points is left for a threshold
   sweep to pick from, and any threshold in ``(0, alarm_level]`` gives the same alarms.
7. **Rest period.** After an alarm the detector reports 0 for ``rest_s`` of the
   channel's own time, but for at most ``rest_max_intervals`` of its sample intervals
   (one anomaly episode gives one alarm, which is what rules and NAB's scoring want;
   12.5 h for 5-minute or slower data, 25 min for a 10-s reading). A clearly stronger
   event (closing ``breakthrough`` of the gap between the alarm that started the rest
   and 1) is reported anyway and restarts it.

**No constant counted in samples alone.** The rest is in seconds (capped in
intervals, so a fast channel is not blind for hours); the horizon
(``horizon_fraction``) and the running mean's time constant (``baseline_fraction``)
are shares of the channel's age, counted in *ticks* of the nominal interval learnt in
warm-up: a point read after a gap of ``k`` intervals (an adaptive sampler skipping
points, a lost sample) advances the clock by ``k`` ticks, so skipping does not stretch
the detector's memory. A clock stepping back advances by one tick; a long outage by
at most the channel's age. Fixed counts (``rest_points``, ``horizon_points``,
``baseline_alpha``) remain available for a channel whose scale is known.

Seen bins live in a map bounded to 200 entries (oldest dropped first); contexts in a
fixed-size table of last-seen point indices (``2 ** table_bits`` int32 slots), block
patterns in another (2,048 slots, 8 KB), where a hashing collision can only make a
context look familiar, never allocate memory. When the bin width doubles, the block
patterns (cells of the old width) are forgotten and the quiet count starts again.

Non-finite values are ignored (score 0, state untouched); clean data first with
:mod:`edge_runtime.anomaly.cleaning`.
"""

from __future__ import annotations

import math
import sys
from array import array
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise

__all__ = ["AnomalyDetector", "DetectorConfig", "MultiChannelDetector"]

_NEVER = -(2**31) + 1
#: Most value bins remembered (a drifting channel keeps reaching new ones).
_MAX_BINS = 200
_HASH_MUL = 0x9E3779B1  # odd multiplier (golden ratio) for integer hashing
_ORDER_SALT = 0x85EBCA6B
#: Recent points kept to rebuild the context table when the bin width changes (2**k).
_RECENT = 512
#: int32 slots of the block-pattern table (8 KB; the NAB series use at most 300 keys).
_PATTERN_SLOTS = 1 << 11
#: Largest magnitude a value is scored at: a detector's spans and bin arithmetic on
#: values near the float limit (1e308) would overflow.
MAX_ABS_VALUE = 1e300


@dataclass(frozen=True, kw_only=True)
class DetectorConfig:
    """Settings of :class:`AnomalyDetector`; the defaults are the ones benchmarked on NAB.

    One global setting is meant to carry to any channel; see
    ``benchmarks/nab_bench.py`` for how they were checked on held-out series.
    """

    #: Bins across the warm-up range of values.
    levels: int = 10
    #: Points used to learn the bin width before scoring starts. Kept short so that the
    #: warm-up ends inside the shortest series worth scoring (NAB does not score the
    #: first 15 % of a series: 240 points of a 1,600-point one, 50 of 336 hourly points);
    #: a too-fine width is repaired later by the bin budget (``rebin_bins``).
    warmup_points: int = 24
    #: Longest bin sequence whose novelty is checked (1 = values only).
    context_orders: int = 5
    #: A bin or context unseen for longer than this share of the channel's age (its
    #: elapsed intervals since the first point) counts as novel again. >= 1 never forgets.
    horizon_fraction: float = 1.0
    #: Fixed horizon in intervals instead of ``horizon_fraction`` (None: scaled).
    horizon_points: int | None = None
    #: Value novelty saturates at this distance (bins) from the nearest seen bin.
    distance_bins: int = 2
    #: Share of the raw score given to context (pattern) novelty, 0..1.
    context_weight: float = 0.3
    #: Score at or above which the detector alarms and starts its rest period. It sits
    #: between two of the score's discrete levels (value novelty in halves, context
    #: novelty in quarters of ``context_weight``), so a small running mean does not move
    #: a whole class of points across it. This is also the shipped default threshold
    #: for the reported score: points that do not alarm report 0.
    alarm_level: float = 0.31
    #: Rest period after an alarm, in seconds of the channel's own clock (one anomaly
    #: episode gives one alarm): 12.5 h (150 points of 5-minute data, 12 hourly ones),
    #: but at most ``rest_max_intervals`` sample intervals. 0: no time-based rest.
    rest_s: float = 45000.0
    #: Cap on ``rest_s`` in nominal sample intervals, so that a fast channel's rest
    #: lasts as many of its own samples as a 5-minute channel's at most: 25 min for a
    #: 10-s node reading, not 12.5 h in which a real fault would be hidden. It never
    #: binds at 5-minute or slower sampling. None: ``rest_s`` alone.
    rest_max_intervals: int | None = 150
    #: Rest period as a share of the channel's age at the alarm (an episode that scales
    #: with how long the channel has been watched); with ``rest_s`` too, the longer.
    rest_fraction: float = 0.0
    #: Fixed rest period in intervals instead of the two above (None: not fixed).
    rest_points: int | None = None
    #: The running mean subtracted from the raw score has a time constant of this share
    #: of the channel's age (so it starts as a plain mean and slows as the channel ages).
    baseline_fraction: float = 0.25
    #: Fixed smoothing factor per interval instead of ``baseline_fraction`` (None: scaled).
    baseline_alpha: float | None = None
    #: log2 of the number of int32 slots in the seen table (memory = 4 * 2**bits bytes).
    table_bits: int = 13
    #: During a rest period, a score that closes this share of the gap between the alarm
    #: that started it and 1 alarms again (a clearly stronger anomaly is not hidden).
    breakthrough: float = 0.5
    #: Bin budget: when a new bin would make more than this many bins visited within
    #: the horizon, the bin width doubles (neighbouring bins merge) until at most half
    #: of them remain, so bins learnt on a near-flat warm-up do not stay far too fine
    #: once bursts arrive. 0 keeps the warm-up width for ever.
    rebin_bins: int = 24
    #: Flat run: consecutive steps no larger than this many bins (:attr:`AnomalyDetector.flat_run`).
    flat_tolerance: float = 0.05
    #: Block-pattern novelty (0 disables it): the mean of every ``pattern_points`` nominal
    #: intervals is one block (24: a whole number of blocks per day at any sampling
    #: interval that divides an hour, and one per day for hourly data, so a daily cycle
    #: always meets the blocks at the same phase). A sequence of ``pattern_order`` block
    #: means that was never seen within the horizon is a change of the signal's shape at
    #: a scale the point-level contexts cannot see (a missing daily peak, a quiet holiday,
    #: denser spikes): it alarms on its own (score 1 minus the running mean).
    pattern_points: int = 24
    #: Block means are quantised at this many bins (the current bin width) per cell ...
    pattern_coarse: float = 3.5
    #: ... on this many grids, each shifted by ``1 / pattern_grids`` of a cell, so the
    #: decision does not hang on where one grid's cell edges fall ...
    pattern_grids: int = 8
    #: ... and a block sequence is novel when it is new on at least this many grids.
    pattern_min_grids: int = 2
    #: Blocks in a sequence (3: two consecutive block-to-block transitions).
    pattern_order: int = 3
    #: A novel block sequence alarms only after this many blocks without one (counted
    #: from the first block and from each bin-width change): a channel still meeting new
    #: shapes is still learning them, not anomalous. 16 blocks: 32 h of 5-minute data.
    pattern_quiet_blocks: int = 16
    #: :attr:`AnomalyDetector.stuck` needs a flat run at least this many intervals ...
    stuck_points: int = 12
    #: ... and this many times longer than the longest flat run before it.
    stuck_factor: float = 3.0

    def __post_init__(self) -> None:
        checks = [
            (self.levels >= 1, "levels must be >= 1"),
            (self.warmup_points >= 2, "warmup_points must be >= 2"),
            (self.context_orders >= 1, "context_orders must be >= 1"),
            (self.horizon_fraction > 0.0, "horizon_fraction must be > 0"),
            (self.horizon_points is None or self.horizon_points >= 1,
             "horizon_points must be >= 1"),
            (self.distance_bins >= 1, "distance_bins must be >= 1"),
            (0.0 <= self.context_weight <= 1.0, "context_weight must be in [0, 1]"),
            (0.0 < self.alarm_level <= 1.0, "alarm_level must be in (0, 1]"),
            (0.0 <= self.rest_fraction < 1.0, "rest_fraction must be in [0, 1)"),
            (self.rest_s >= 0.0 and math.isfinite(self.rest_s), "rest_s must be >= 0"),
            (self.rest_max_intervals is None or self.rest_max_intervals >= 0,
             "rest_max_intervals must be >= 0"),
            (self.rest_points is None or self.rest_points >= 0, "rest_points must be >= 0"),
            (self.baseline_fraction > 0.0, "baseline_fraction must be > 0"),
            (self.baseline_alpha is None or 0.0 <= self.baseline_alpha < 1.0,
             "baseline_alpha must be in [0, 1)"),
            (6 <= self.table_bits <= 20, "table_bits must be in 6..20"),
            (0.0 <= self.breakthrough <= 1.0, "breakthrough must be in [0, 1]"),
            (self.flat_tolerance >= 0.0, "flat_tolerance must be >= 0"),
            (self.stuck_points >= 2, "stuck_points must be >= 2"),
            (self.stuck_factor >= 1.0, "stuck_factor must be >= 1"),
            (self.pattern_points >= 0, "pattern_points must be >= 0"),
            (self.pattern_coarse > 0.0 and math.isfinite(self.pattern_coarse),
             "pattern_coarse must be > 0"),
            (1 <= self.pattern_grids <= 64, "pattern_grids must be in 1..64"),
            (1 <= self.pattern_min_grids <= self.pattern_grids,
             "pattern_min_grids must be in 1..pattern_grids"),
            (2 <= self.pattern_order <= 8, "pattern_order must be in 2..8"),
            (self.pattern_quiet_blocks >= 0, "pattern_quiet_blocks must be >= 0"),
            (
                self.rebin_bins == 0 or 2 <= self.rebin_bins <= _MAX_BINS,
                f"rebin_bins must be 0 or in 2..{_MAX_BINS}",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"DetectorConfig: {message}")


class AnomalyDetector:
    """Online anomaly score in [0, 1] for one scalar channel (see the module docstring).

    Use :meth:`update` once per sample, in time order. The detector keeps no reference
    to past values beyond a fixed table, so memory stays bounded however long it runs.
    """

    #: :meth:`update` takes a sample's ``envelope`` (pipelines check this flag).
    accepts_envelope = True

    __slots__ = (
        "_alarm",
        "_base",
        "_bins",
        "_cfg",
        "_dt",
        "_flat_tol",
        "_hi",
        "_hist",
        "_horizon",
        "_lo",
        "_mask",
        "_max_run",
        "_n",
        "_pat_blocks",
        "_pat_cnt",
        "_pat_hist",
        "_pat_last",
        "_pat_mid",
        "_pat_skipped",
        "_pat_sum",
        "_pat_table",
        "_prev",
        "_quiet_until",
        "_ring_i",
        "_ring_t",
        "_ring_v",
        "_run",
        "_t_last",
        "_table",
        "_tick",
        "_warm",
        "_width",
        "last_raw",
    )

    def __init__(self, config: DetectorConfig | None = None) -> None:
        self._cfg = config or DetectorConfig()
        size = 1 << self._cfg.table_bits
        self._mask = size - 1
        self._table = array("i", [_NEVER]) * size
        self._bins: dict[int, int] = {}
        self._n = 0
        self._tick = 0
        self._t_last = 0.0
        self._dt = 0.0
        self._lo = math.inf
        self._hi = -math.inf
        self._width = 0.0
        self._flat_tol = 0.0  # flat_tolerance * _width, kept in step with the width
        self._hist = [0] * self._cfg.context_orders
        #: the last _RECENT learnt values and their ticks (a ring), to rebuild contexts
        self._ring_v = array("d", [math.nan]) * _RECENT
        self._ring_t = array("i", [_NEVER]) * _RECENT
        self._ring_i = 0
        #: current horizon in ticks (scaled with the channel's age, see DetectorConfig)
        self._horizon = self._cfg.horizon_points or self._cfg.warmup_points
        self._quiet_until = 0
        self._alarm = 0.0
        self._base = 0.0
        #: warm-up (time, value) pairs, replayed into the memory when warm-up ends
        self._warm: array[float] | None = array("d")
        #: Raw score of the last point before rest-period suppression, for diagnostics.
        self.last_raw = 0.0
        self._prev = math.nan  # previous finite value, for the flat-run count
        self._run = 0  # points in the current flat run (steps within the tolerance)
        self._max_run = -1  # longest flat run that has ended; -1: never moved yet
        # block-pattern novelty: the open block's sum and length (intervals), the cells
        # of the last pattern_order - 1 blocks (latest first, one per grid), blocks
        # closed, the block of the last novel sequence, and the seen-sequence table
        self._pat_sum = 0.0
        self._pat_cnt = 0
        self._pat_hist: list[list[int]] = []
        self._pat_blocks = 0
        self._pat_last = 0
        # an envelope's skipped intervals, and their midrange, until the read closes them
        self._pat_skipped = 0
        self._pat_mid = 0.0
        self._pat_table = array("i", [_NEVER]) * _PATTERN_SLOTS

    @property
    def config(self) -> DetectorConfig:
        """The settings this detector runs with."""
        return self._cfg

    @property
    def alarm_level(self) -> float:
        """Score at or above which a point alarms (``config.alarm_level``; the
        :class:`~edge_runtime.anomaly.protocols.Detector` protocol asks for it)."""
        return self._cfg.alarm_level

    @property
    def points_seen(self) -> int:
        """Number of finite values scored so far (envelope extremes included)."""
        return self._n

    @property
    def warmed_up(self) -> bool:
        """True once the warm-up is over and scores can be non-zero."""
        return self._n >= self._cfg.warmup_points

    @property
    def interval_s(self) -> float:
        """Nominal sample interval learnt in warm-up (s); 0 before."""
        return self._dt

    def update(
        self, t_s: float, value: float, envelope: tuple[float, float] | None = None
    ) -> float:
        """Take the next sample (time in s, value) and return its anomaly score in [0, 1].

        Points may be skipped (adaptive sampling, lost samples): the time since the
        previous point, in nominal intervals, advances the detector's clock.

        ``envelope`` is ``(min, max)`` of the values measured since the previous point
        given, this one included (a device in peak-hold mode, see
        :attr:`edge_runtime.sources.base.Sample.envelope`). Its end further from
        ``value`` is scored first, as a point one nominal interval before ``t_s``, so a
        spike between two reads is still seen; the larger of the two scores (and of the
        two raw scores, in :attr:`last_raw`) is kept. In the block means the intervals
        skipped count at the envelope's midrange (a closer estimate of their mean than
        the extreme or the value read).

        A finite value beyond +-:data:`MAX_ABS_VALUE` (a sensor's garbage, 1e308) is
        scored as that bound: the arithmetic on it stays finite, so it alarms like any
        far outlier instead of overflowing.
        """
        if not -MAX_ABS_VALUE <= value <= MAX_ABS_VALUE and math.isfinite(value):
            value = math.copysign(MAX_ABS_VALUE, value)
        if envelope is not None and self._warm is None:
            lo, hi = (min(max(end, -MAX_ABS_VALUE), MAX_ABS_VALUE) if math.isfinite(end)
                      else end for end in envelope)
            extreme = lo if value - lo > hi - value else hi
            if extreme != value and math.isfinite(extreme):
                dt = self._dt
                if t_s - self._t_last > 1.5 * dt:
                    # the intervals skipped enter the block mean at the envelope's midrange
                    self._pat_mid = 0.5 * (lo + hi)
                    first = self._update(t_s - dt, extreme, skipped=True)
                else:  # read one interval after the last: the clock moves once, not twice
                    first = self._update(self._t_last, extreme, advance=False)
                first_raw = self.last_raw
                score = self._update(t_s, value)
                self.last_raw = max(first_raw, self.last_raw)
                return max(first, score)
        return self._update(t_s, value)

    def _update(
        self, t_s: float, value: float, advance: bool = True, skipped: bool = False
    ) -> float:
        """Score one value; ``advance=False`` scores it at the last point's tick (an
        envelope extreme read one interval after the previous point). ``skipped``: an
        envelope extreme standing for the intervals skipped, which the block mean takes
        at the envelope's midrange when the read value that follows closes them."""
        if not math.isfinite(value):
            return 0.0
        cfg = self._cfg
        n = self._n
        self._n = n + 1
        if n < cfg.warmup_points:
            self._warm_up(n, t_s, value)
            return 0.0
        steps = 0
        age = self._tick + cfg.warmup_points  # intervals since the first point
        if advance:
            steps = 1
            dt = self._dt
            if dt > 0.0:
                gap = t_s - self._t_last
                if gap > 1.5 * dt:
                    steps = min(int(gap / dt + 0.5), max(age, 1))
            self._t_last = t_s
            age += steps
            fixed = cfg.horizon_points
            self._horizon = fixed if fixed is not None else int(cfg.horizon_fraction * age)
        # flat run, in elapsed intervals (inline: this runs for every point)
        if abs(value - self._prev) <= self._flat_tol:
            self._run += steps
        else:
            self._max_run = max(self._max_run, self._run)
            self._run = 0
        self._prev = value
        tick = self._tick + steps
        self._tick = tick
        raw = self._learn(tick, value)
        if skipped:
            self._pat_skipped += steps
        elif steps and cfg.pattern_points:
            gap = self._pat_skipped
            self._pat_skipped = 0
            self._pat_sum += value * steps + self._pat_mid * gap
            self._pat_cnt += steps + gap
            if self._pat_cnt >= cfg.pattern_points:
                raw = max(raw, self._close_block(tick))
        base = self._base
        alpha = cfg.baseline_alpha
        if alpha is None:
            alpha = 1.0 / max(1.0, cfg.baseline_fraction * age)
        if steps != 1:  # one factor per elapsed interval (none for advance=False)
            alpha = 1.0 - (1.0 - alpha) ** steps
        self._base = base + alpha * (raw - base)
        score = raw - base
        if score < 0.0:
            score = 0.0
        elif score > 1.0:
            score = 1.0
        self.last_raw = score
        # The alarm decision: below the alarm level (or resting) the reported score is
        # 0, so the reported scores are the detector's alarms and nothing else; no band
        # of near-threshold points is left for a threshold sweep to pick from.
        if tick < self._quiet_until:
            alarm = self._alarm
            if score <= alarm + cfg.breakthrough * (1.0 - alarm):
                return 0.0
        elif score < cfg.alarm_level:
            return 0.0
        self._quiet_until = tick + 1 + self._rest_ticks(age)
        self._alarm = score
        return score

    def _close_block(self, tick: int) -> float:
        """Close the open block: 1.0 if the sequence it ends is novel and the channel
        had gone ``pattern_quiet_blocks`` blocks without one, else 0.0."""
        cfg = self._cfg
        mean = self._pat_sum / self._pat_cnt  # weighted by the intervals each value held
        self._pat_sum = 0.0
        self._pat_cnt = 0
        self._pat_blocks += 1
        grids = cfg.pattern_grids
        u = (mean - self._lo) / (self._width * cfg.pattern_coarse)
        cells = [math.floor(u + g / grids) for g in range(grids)]
        hist = self._pat_hist
        novel = 0
        if len(hist) == cfg.pattern_order - 1:
            table = self._pat_table
            mask = _PATTERN_SLOTS - 1
            horizon = self._horizon
            for g in range(grids):
                key = g * _ORDER_SALT + cells[g]
                for past in hist:
                    key = (key * _HASH_MUL + past[g]) & 0xFFFFFFFFFFFF
                slot = (key ^ (key >> 23)) & mask
                if tick - table[slot] > horizon:
                    novel += 1
                table[slot] = tick
        hist.insert(0, cells)
        del hist[cfg.pattern_order - 1 :]
        if novel < cfg.pattern_min_grids:
            return 0.0
        quiet = self._pat_blocks - self._pat_last
        self._pat_last = self._pat_blocks
        return 1.0 if quiet > cfg.pattern_quiet_blocks else 0.0

    def _reset_patterns(self) -> None:
        """Forget the block sequences (their cells were of the old bin width) and start
        the quiet count again; the open block goes on."""
        self._pat_table[:] = array("i", [_NEVER]) * _PATTERN_SLOTS
        self._pat_hist = []
        self._pat_last = self._pat_blocks

    def _rest_ticks(self, age: int) -> int:
        """Length of a rest period started now, in intervals."""
        cfg = self._cfg
        if cfg.rest_points is not None:
            return cfg.rest_points
        rest = cfg.rest_fraction * age
        if cfg.rest_s and self._dt > 0.0:
            timed = cfg.rest_s / self._dt
            if cfg.rest_max_intervals is not None:
                timed = min(timed, float(cfg.rest_max_intervals))
            rest = max(rest, timed)
        return int(rest)

    def _count_flat(self, value: float) -> None:
        """Track flat runs over the warm-up points (one interval each); after warm-up
        :meth:`_update` counts them inline, in elapsed intervals."""
        if abs(value - self._prev) <= self._flat_tol:
            self._run += 1
        else:
            if self._run > self._max_run and not math.isnan(self._prev):  # not the first
                self._max_run = self._run
            self._run = 0
        self._prev = value

    @property
    def flat_run(self) -> int:
        """Length of the current flat run (values within ``flat_tolerance`` bins of the
        previous one), in nominal sample intervals: skipped points count as time."""
        return self._run

    @property
    def stuck(self) -> bool:
        """True while the channel looks stuck: it has moved before, and its current
        flat run is at least ``stuck_points`` intervals long and ``stuck_factor`` times
        longer than any flat run before it (a sensor that froze, a dead feed).

        A separate signal from the score, for rules: on NAB, adding it to the score
        helped one half of the series and cost the other (``docs/anomaly-experiments.md``).
        """
        max_run = self._max_run
        return (max_run >= 0 and self._run >= self._cfg.stuck_points
                and self._run > self._cfg.stuck_factor * max_run)

    def _warm_up(self, n: int, t_s: float, value: float) -> None:
        """Collect warm-up points; at the last one, set the bins and replay them."""
        cfg = self._cfg
        warm = self._warm
        assert warm is not None
        warm.append(t_s)
        warm.append(value)
        self._lo = min(self._lo, value)
        self._hi = max(self._hi, value)
        if n < cfg.warmup_points - 1:
            return
        spread = self._hi - self._lo
        if spread > 0.0:
            self._width = spread / cfg.levels
        else:  # flat warm-up: any visible change should matter
            self._width = max(abs(self._hi) * 1e-3, 1e-9)
        times = warm[0::2]
        steps = sorted(b - a for a, b in pairwise(times) if b > a)
        self._dt = steps[len(steps) // 2] if steps else 0.0
        # Replay: the warm-up points fill the memory (one tick each, ending at tick 0);
        # their own novelty is discarded and the running mean starts after warm-up.
        self._flat_tol = cfg.flat_tolerance * self._width
        self._prev, self._run, self._max_run = math.nan, 0, -1
        for v in warm[1::2]:
            self._count_flat(v)
        for k, v in enumerate(warm[1::2]):
            self._learn(k - len(times) + 1, v)
        self._tick = 0
        self._t_last = times[-1]
        self._warm = None
        fixed = cfg.horizon_points
        age = cfg.warmup_points
        self._horizon = fixed if fixed is not None else int(cfg.horizon_fraction * age)

    def _learn(self, tick: int, value: float) -> float:
        """Score ``value`` against the memory at ``tick``, then remember it; raw score."""
        cfg = self._cfg
        q = int((value - self._lo) // self._width)
        horizon = self._horizon
        # value novelty: distance to the nearest bin seen within the horizon
        bins = self._bins
        budget = cfg.rebin_bins
        if budget and len(bins) >= budget and q not in bins and self._widen(tick):
            bins = self._bins
            q = int((value - self._lo) // self._width)
        never = _NEVER
        novelty = 0.0
        if tick - bins.get(q, never) > horizon:
            dmax = cfg.distance_bins
            d = dmax
            for k in range(1, dmax):
                if (
                    tick - bins.get(q - k, never) <= horizon
                    or tick - bins.get(q + k, never) <= horizon
                ):
                    d = k
                    break
            novelty = d / dmax
            if len(bins) >= _MAX_BINS:
                self._prune_bins(tick)
        bins[q] = tick
        r = self._ring_i
        self._ring_v[r] = value
        self._ring_t[r] = tick
        self._ring_i = (r + 1) & (_RECENT - 1)
        # context novelty over bin sequences of length 2..orders
        hist = self._hist
        orders = len(hist)
        hist.pop()
        hist.insert(0, q)
        if orders < 2:
            return novelty
        table = self._table
        mask = self._mask
        novel_ctx = 0
        key = q
        for k in range(1, orders):
            key = (key * _HASH_MUL + hist[k] + k * _ORDER_SALT) & 0xFFFFFFFFFFFF
            cslot = (key ^ (key >> 23)) & mask
            if tick - table[cslot] > horizon:
                novel_ctx += 1
            table[cslot] = tick
        cw = cfg.context_weight
        return (1.0 - cw) * novelty + cw * novel_ctx / (orders - 1)

    def _widen(self, tick: int) -> bool:
        """Over the bin budget: drop stale bins, then double the width while needed.

        Doubling merges bin ``q`` into ``q // 2`` exactly (same origin), keeping the
        latest visit. Context keys of the old width no longer match, so the context
        table is reset (a changed width would otherwise look like a changed pattern).
        Returns True if the width changed.
        """
        bins = self._bins
        horizon = self._horizon
        for b in [b for b, last in bins.items() if tick - last > horizon]:
            del bins[b]
        budget = self._cfg.rebin_bins
        if len(bins) < budget:
            return False
        while len(bins) > budget // 2:
            bins = self._double_width(bins)
        self._bins = bins
        self._rebuild_contexts()
        self._reset_patterns()
        return True

    def _double_width(self, bins: dict[int, int]) -> dict[int, int]:
        """Double the bin width: bin ``q`` merges into ``q // 2`` (exact, same origin),
        keeping the latest visit; returns the merged map."""
        merged: dict[int, int] = {}
        for b, last in bins.items():
            m = b // 2
            if merged.get(m, _NEVER) < last:
                merged[m] = last
        self._width *= 2.0
        self._flat_tol = self._cfg.flat_tolerance * self._width
        self._hist = [h // 2 for h in self._hist]
        return merged

    def _rebuild_contexts(self) -> None:
        """Reset the context table and relearn it from the recent points at the current
        width, so a widening forgets only what is older than the ring."""
        table = self._table
        table[:] = array("i", [_NEVER]) * len(table)
        orders = len(self._hist)
        mask, lo, width = self._mask, self._lo, self._width
        hist = [0] * orders
        start = self._ring_i
        for j in range(_RECENT):
            r = (start + j) & (_RECENT - 1)
            t = self._ring_t[r]
            if t == _NEVER:
                continue
            q = int((self._ring_v[r] - lo) // width)
            hist.pop()
            hist.insert(0, q)
            key = q
            for k in range(1, orders):
                key = (key * _HASH_MUL + hist[k] + k * _ORDER_SALT) & 0xFFFFFFFFFFFF
                table[(key ^ (key >> 23)) & mask] = t
        self._hist = hist

    def _prune_bins(self, tick: int) -> None:
        """Keep the bin map bounded: drop bins older than the horizon, else the oldest half."""
        bins = self._bins
        horizon = self._horizon
        stale = [b for b, last in bins.items() if tick - last > horizon]
        if len(stale) < len(bins) // 4:
            stale = sorted(bins, key=bins.__getitem__)[: len(bins) // 2]
        for b in stale:
            del bins[b]

    def state_bytes(self) -> int:
        """Memory held by this detector's state, in bytes (table, bin map, history)."""
        # 64 bytes per bin entry covers its two int objects; the dict's own size is
        # counted by getsizeof. The warm-up buffer exists only until warm-up ends.
        return (
            sys.getsizeof(self)
            + sys.getsizeof(self._table)
            + sys.getsizeof(self._bins)
            + 64 * len(self._bins)
            + sys.getsizeof(self._hist)
            + 32 * len(self._hist)
            + sys.getsizeof(self._ring_v)
            + sys.getsizeof(self._ring_t)
            + sys.getsizeof(self._pat_table)
            + sys.getsizeof(self._pat_hist)
            + sum(sys.getsizeof(cells) + 32 * len(cells) for cells in self._pat_hist)
            + (sys.getsizeof(self._warm) if self._warm is not None else 0)
        )


class MultiChannelDetector:
    """One :class:`AnomalyDetector` per named channel, combined into one score.

    The combined score is the maximum of the channel scores: a 3-axis accelerometer is
    anomalous when any axis is, and the value stays in [0, 1] and comparable to a
    single channel's. :attr:`last_scores` keeps the per-channel scores of the last update.
    """

    def __init__(self, channels: Sequence[str], config: DetectorConfig | None = None) -> None:
        if not channels:
            raise ValueError("MultiChannelDetector needs at least one channel name")
        if len(set(channels)) != len(channels):
            raise ValueError(f"channel names must be unique, got {list(channels)}")
        self.channels = tuple(channels)
        self._detectors = {name: AnomalyDetector(config) for name in self.channels}
        self.last_scores: dict[str, float] = dict.fromkeys(self.channels, 0.0)

    def update(self, t_s: float, values: Mapping[str, float] | Sequence[float]) -> float:
        """Update every channel with its value at ``t_s`` (s); return the combined score.

        ``values`` is a mapping by channel name (missing channels are skipped this
        time) or a sequence in :attr:`channels` order.
        """
        if isinstance(values, Mapping):
            unknown = set(values) - set(self.channels)
            if unknown:
                raise KeyError(f"unknown channel(s) {sorted(unknown)}; known: {self.channels}")
            items = [(k, float(v)) for k, v in values.items()]
        else:
            if len(values) != len(self.channels):
                raise ValueError(
                    f"got {len(values)} values for {len(self.channels)} channels {self.channels}"
                )
            items = list(zip(self.channels, (float(v) for v in values), strict=True))
        best = 0.0
        for name, value in items:
            score = self._detectors[name].update(t_s, value)
            self.last_scores[name] = score
            best = max(best, score)
        return best

    def detector(self, channel: str) -> AnomalyDetector:
        """The detector of one channel."""
        return self._detectors[channel]

    def state_bytes(self) -> int:
        """Memory held by all channel detectors, in bytes."""
        return sum(d.state_bytes() for d in self._detectors.values())
