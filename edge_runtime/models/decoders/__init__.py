"""Output decoders: raw model outputs -> results rules can test (boxes, masks, fields).

One module per layout behind one interface (:class:`~.base.Decoder`): ``tflite_ssd``
(TFLite detection post-process), ``anchors`` (MediaPipe-style SSD with generated
anchors), ``yolo`` (Ultralytics v5 / v8 / v11 exports), ``segmentation`` (per-pixel class
maps) and ``plugin`` (your own function). The consumer,
:mod:`edge_runtime.pipelines.postprocess`, picks one from the manifest; this package
imports none of them itself.
"""
