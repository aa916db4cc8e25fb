"""The heavy digits classifier: 32x32 input, ~0.8 M parameters, six 3x3 convs.

Deliberately much more compute than ``digits`` (the task offloaded to peers). Channel
counts are multiples of 16 so that onnxruntime's int8 kernels run at full width.
"""

from __future__ import annotations

from typing import Any

from image_family import DigitsSplit, FamilyResult, FamilySpec, build_family


def make_model() -> Any:
    """VGG-style: 2x Conv(32), pool, 2x Conv(64), pool, 2x Conv(128), pool, FC 256, FC 10."""
    import keras
    from keras import layers

    return keras.Sequential([
        keras.Input((32, 32, 1)),
        layers.Conv2D(32, 3, padding="same", activation="relu"),
        layers.Conv2D(32, 3, padding="same", activation="relu"),
        layers.MaxPooling2D(2),
        layers.Conv2D(64, 3, padding="same", activation="relu"),
        layers.Conv2D(64, 3, padding="same", activation="relu"),
        layers.MaxPooling2D(2),
        layers.Conv2D(128, 3, padding="same", activation="relu"),
        layers.Conv2D(128, 3, padding="same", activation="relu"),
        layers.MaxPooling2D(2),
        layers.Flatten(),
        layers.Dropout(0.3),
        layers.Dense(256, activation="relu"),
        layers.Dropout(0.3),
        layers.Dense(10, activation="softmax"),
    ])


SPEC = FamilySpec(
    family="digits-heavy",
    size=32,
    make_model=make_model,
    epochs=20,
    batch_size=32,
    description=(
        "Handwritten digit classifier (0-9) for 32x32 grayscale images, heavy VGG-style CNN"
    ),
    learning_rate=1e-3,
)


def build(split: DigitsSplit) -> FamilyResult:
    """Train and ship the four digits-heavy variants."""
    return build_family(SPEC, split)
