"""The small digits classifier: an 8x8 grayscale CNN of a few thousand parameters."""

from __future__ import annotations

from typing import Any

from image_family import DigitsSplit, FamilyResult, FamilySpec, build_family


def make_model() -> Any:
    """Conv(16) -> pool -> Conv(32) -> pool -> Dense(10, softmax); about 6 k parameters."""
    import keras
    from keras import layers

    return keras.Sequential([
        keras.Input((8, 8, 1)),
        layers.Conv2D(16, 3, padding="same", activation="relu"),
        layers.MaxPooling2D(2),
        layers.Conv2D(32, 3, padding="same", activation="relu"),
        layers.MaxPooling2D(2),
        layers.Flatten(),
        layers.Dense(10, activation="softmax"),
    ])


SPEC = FamilySpec(
    family="digits",
    size=8,
    make_model=make_model,
    epochs=80,
    batch_size=32,
    description="Handwritten digit classifier (0-9) for 8x8 grayscale images, small CNN",
    learning_rate=3e-3,
)


def build(split: DigitsSplit) -> FamilyResult:
    """Train and ship the four digits variants."""
    return build_family(SPEC, split)
