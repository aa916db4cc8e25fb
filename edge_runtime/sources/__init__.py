"""Sources of samples: cameras, GPIO sensors, recordings (and the firmware bridge).

Only the light-weight interface is imported here; camera and GPIO modules import OpenCV
and gpiozero when a device opens, so importing this package stays cheap.
"""

from edge_runtime.sources.base import Sample, Source, SourceStats

__all__ = ["Sample", "Source", "SourceStats"]
