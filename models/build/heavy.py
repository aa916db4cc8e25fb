"""The heavy digits classifier: 32x32 input, ~1.07 M parameters.

Deliberately much bigger than ``digits`` (the task offloaded to peers), and shaped so
that int8 pays off on a CPU. On the AVX2-only build machine (no VNNI) onnxruntime's
int8 convolutions run at about the speed of its float NCHWc ones, so a conv-dominated
VGG-style net (2x32, 2x64, 2x128 channels, 0.81 M parameters, ~38 M MACs) measured only
0.93-1.12x (onnxruntime) and 1.13-1.20x (LiteRT) int8 speed-up. A large fully connected
layer is memory-bound at batch 1 and int8 weights are 4x smaller, so this design puts
most of its parameters there: measured ~1.5x (onnxruntime) and ~1.4x (LiteRT).
"""

from __future__ import annotations

from typing import Any

from image_family import DigitsSplit, FamilyResult, FamilySpec, build_family


def make_model() -> Any:
    """Conv(32) -> pool -> Conv(64) -> pool -> FC 4096x256 -> FC 10 (softmax); ~1.07 M params."""
    import keras
    from keras import layers

    return keras.Sequential([
        keras.Input((32, 32, 1)),
        layers.Conv2D(32, 3, padding="same", activation="relu"),
        layers.MaxPooling2D(2),
        layers.Conv2D(64, 3, padding="same", activation="relu"),
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
        "Handwritten digit classifier (0-9) for 32x32 grayscale images, heavy CNN (1 M params)"
    ),
    learning_rate=1e-3,
)


def build(split: DigitsSplit) -> FamilyResult:
    """Train and ship the four digits-heavy variants."""
    return build_family(SPEC, split)
