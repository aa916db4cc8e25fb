"""The seams of a scalar pipeline: what a detector, a cleaner and a forecaster must be.

A pipeline (:class:`~edge_runtime.pipelines.pipeline.Pipeline`) and the ``detector``
sampling policy (:class:`~edge_runtime.sampling.policy.DetectorGate`) use these stages
only through the protocols below, never through ``getattr`` probes. They are
:func:`~typing.runtime_checkable`: ``edge-runtime check`` builds a config's
``module:Class`` detector once and refuses one that lacks a member, naming it
(:func:`missing_members`).

Implementations shipped beside this module: :class:`~.detector.AnomalyDetector` and the
baselines in :mod:`.baselines` (:class:`Detector`), :class:`~.cleaning.Cleaner`
(:class:`Cleaner`), :class:`~.forecast.TrendForecaster` (:class:`Forecaster`).

**Which thread.** Every method here is called from :meth:`Pipeline.infer
<edge_runtime.pipelines.pipeline.Pipeline.infer>`: in the pipeline's own worker thread,
or, for a plain-arithmetic pipeline (no model, detector or cleaner, see
:attr:`Pipeline.cheap <edge_runtime.pipelines.pipeline.Pipeline.cheap>`), on the event
loop. One pipeline never calls its stages concurrently, so they need no lock; they must
not block (no I/O, no sleeps) either way. ``Pipeline.status`` reads counters and
settings on the loop while the worker runs: keep them plain numbers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from edge_runtime.anomaly.cleaning import CleaningCounters
    from edge_runtime.anomaly.forecast import Forecast

__all__ = ["Cleaner", "Detector", "DetectorBase", "Forecaster", "missing_members"]


@runtime_checkable
class Detector(Protocol):
    """A streaming anomaly detector for one scalar channel (``[[pipelines]] detector``).

    Implementers **must** provide :meth:`update`. The other members **must** exist too,
    but :class:`DetectorBase` gives each a neutral default, so a detector that subclasses
    it **may** override only what it knows: :attr:`accepts_envelope` (default False),
    :attr:`alarm_level` (0.5), :attr:`last_raw` (None), :attr:`warmed_up` (True) and
    :attr:`stuck` (None). Plain attributes or properties both do.

    The constructor takes the pipeline's ``detector_params`` as keyword arguments; it
    runs in ``edge-runtime check`` and when the daemon builds a config (in an executor),
    so it must be cheap and must not open devices or files.
    """

    def update(
        self, t_s: float, value: float, envelope: tuple[float, float] | None = None
    ) -> float:
        """Score the next point (sample time in s, value) and learn from it; the score
        (0..1 for the shipped detectors) is the result's ``score`` field.

        Points come in time order, possibly with gaps (adaptive sampling). ``envelope``
        (min, max of the values measured since the previous point) is only passed when
        :attr:`accepts_envelope` is True; otherwise the call is ``update(t_s, value)``.
        """
        ...

    @property
    def accepts_envelope(self) -> bool:
        """Whether :meth:`update` takes a sample's ``envelope`` as third argument."""
        ...

    @property
    def alarm_level(self) -> float:
        """Score at or above which a point counts as anomalous (the health score's
        anomaly activity is the share of recent time spent there)."""
        ...

    @property
    def last_raw(self) -> float | None:
        """The last point's score before any rest-period suppression (the result's
        ``raw_score``, the activity signal for adaptive sampling); None: not reported."""
        ...

    @property
    def warmed_up(self) -> bool:
        """False while the detector still learns (the result is marked ``warming``)."""
        ...

    @property
    def stuck(self) -> bool | None:
        """Whether the channel looks frozen (the result's ``stuck`` field is 1.0 then);
        None: this detector does not tell."""
        ...


class DetectorBase:
    """Neutral defaults for the optional members of :class:`Detector`; subclass it and
    write :meth:`update` (``update(t_s, value)`` is enough while
    :attr:`accepts_envelope` stays False)."""

    __slots__ = ()

    accepts_envelope: bool = False
    alarm_level: float = 0.5
    last_raw: float | None = None
    warmed_up: bool = True
    stuck: bool | None = None


@runtime_checkable
class Cleaner(Protocol):
    """The data-cleaning stage of a scalar pipeline (``[pipelines.cleaning]``).

    Implementers **must** provide all three members; the shipped one is
    :class:`edge_runtime.anomaly.cleaning.Cleaner`.
    """

    @property
    def counters(self) -> CleaningCounters:
        """What the cleaner did so far (``status`` shows it; the health score uses its
        ``fixed_or_dropped`` and ``seen``)."""
        ...

    def push(self, t_s: float, value: float) -> list[tuple[float, float]]:
        """Take one sample; the cleaned ``(t_s, value)`` points to pass on, in time
        order: none (dropped), one, or several (gap filling; the last is this sample)."""
        ...

    def clean_envelope(
        self, envelope: tuple[float, float], value: float
    ) -> tuple[float, float] | None:
        """The part of a sample's envelope to pass on with its cleaned ``value``;
        None to drop the envelope."""
        ...


@runtime_checkable
class Forecaster(Protocol):
    """The trend forecaster of a scalar pipeline (``[pipelines.forecast]``), wrapped by
    :class:`~edge_runtime.pipelines.forecast.ForecastStage`.

    Implementers **must** provide all members; the shipped one is
    :class:`edge_runtime.anomaly.forecast.TrendForecaster`. Times are on the source's
    clock (a replay's recorded seconds).
    """

    @property
    def limit(self) -> float:
        """The value whose crossing is forecast, in the channel's unit."""
        ...

    @property
    def upper(self) -> bool:
        """True when the value rising to :attr:`limit` is watched, False when falling."""
        ...

    @property
    def warn_within_s(self) -> float:
        """Warning horizon (s): the health score's forecast urgency is measured over it."""
        ...

    @property
    def hold_s(self) -> float:
        """How long (s) the warning condition must hold before the warning turns on."""
        ...

    def update(self, t_s: float, value: float) -> Forecast | None:
        """Add one cleaned sample; the forecast after it, or None while learning."""
        ...


def missing_members(obj: object, protocol: type) -> list[str]:
    """The public members of ``protocol`` (a :class:`~typing.Protocol`) that ``obj``
    lacks, in the protocol's order; empty when ``isinstance(obj, protocol)`` holds."""
    names = [*getattr(protocol, "__annotations__", {}),
             *(k for k in vars(protocol) if not k.startswith("_"))]
    return [name for name in dict.fromkeys(names)
            if not name.startswith("_") and not hasattr(obj, name)]
