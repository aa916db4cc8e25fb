"""Every timing and threshold default of adaptive sampling, in one place tests can patch."""

from __future__ import annotations

#: After the last sign of activity, stay at the maximum rate this long.
HOLD_S = 5.0
#: When calm, the rate's distance above the minimum halves every this many seconds.
DECAY_HALF_LIFE_S = 10.0
#: A rate change is logged and counted when the rate moved by this fraction since the
#: last logged one (or hit min or max), so a smooth decay does not flood the log.
RATE_CHANGE_REPORT_RATIO = 0.25

#: Motion gate: frames are shrunk to this (width, height) in gray before differencing.
MOTION_SIZE = (32, 24)
#: A pixel has changed when it differs from the background by more than this (0..255).
MOTION_PIXEL_THRESHOLD = 20
#: A frame has motion when at least this fraction of its pixels changed.
MOTION_AREA_FRACTION = 0.01
#: How fast the background follows the scene (fraction of the new frame per sample).
MOTION_BACKGROUND_ALPHA = 0.2
#: Run inference at least this often even without motion, so a static change is seen.
MOTION_HEARTBEAT_S = 30.0

#: Sensor policies: exponentially weighted statistics forget with this smoothing factor.
SENSOR_EWMA_ALPHA = 0.05
#: Change policy: a step larger than this many typical steps is activity.
CHANGE_FACTOR = 4.0
#: Novelty policy: a value this many standard deviations from the running mean is activity.
NOVELTY_Z = 3.0
#: Sensor policies need this many samples before they judge (until then: active).
WARMUP_SAMPLES = 10

#: Budget: between these temperatures the allowed rate falls linearly from max to min.
TEMP_SOFT_C = 70.0
TEMP_HARD_C = 80.0
#: Budget: above this whole-machine CPU use (percent) the allowed rate shrinks.
CPU_HIGH_PERCENT = 85.0
#: Budget: read temperature and CPU at most this often.
BUDGET_INTERVAL_S = 2.0
