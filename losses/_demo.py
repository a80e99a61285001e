"""``python -m losses demo``: a tiny segmentation model trained with DiceLoss in every installed frontend.

The data are synthetic: discs and squares on a noisy background, three classes (background, disc,
square), made with NumPy so the demo needs no download.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Iterable

import numpy as np

CLASSES = 3
SIZE = 32

# Images and label maps, as synthetic_shapes makes them; the demo trains on one and tests on another.
Split = tuple[np.ndarray, np.ndarray]


def synthetic_shapes(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Images (count, SIZE, SIZE) float32 and label maps (count, SIZE, SIZE) int64."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    images = rng.normal(0.0, 0.3, (count, SIZE, SIZE)).astype(np.float32)
    labels = np.zeros((count, SIZE, SIZE), np.int64)
    for i in range(count):
        for label in (1, 2):
            cy, cx = rng.integers(6, SIZE - 6, 2)
            radius = rng.integers(3, 6)
            if label == 1:
                mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2
            else:
                mask = (np.abs(yy - cy) <= radius) & (np.abs(xx - cx) <= radius)
            labels[i][mask] = label
            images[i][mask] += 1.0 if label == 1 else -1.0
    return images, labels


def hard_dice_score(predicted: np.ndarray, labels: np.ndarray) -> float:
    """Mean Dice over the foreground classes of arg-max predictions (1 = perfect)."""
    scores = []
    for c in range(1, CLASSES):
        p, g = predicted == c, labels == c
        denominator = p.sum() + g.sum()
        scores.append(1.0 if denominator == 0 else 2.0 * (p & g).sum() / denominator)
    return float(np.mean(scores))


def _progress(steps: int, description: str) -> Iterable[int]:
    try:
        from tqdm import tqdm

        progress: Iterable[int] = tqdm(range(steps), desc=description, ncols=80)
        return progress
    except ImportError:  # pragma: no cover - tqdm is in the test and all extras
        print(description)
        return range(steps)


def _demo_torch(steps: int, data: tuple[Split, Split]) -> tuple[float, float, float, float]:
    import torch

    from losses.torch import DiceLoss

    torch.manual_seed(0)
    (train_x, train_y), (test_x, test_y) = data
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 16, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(16, 16, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(16, CLASSES, 1),
    )
    criterion = DiceLoss(mode="multiclass")
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    images, labels = torch.from_numpy(train_x[:, None]), torch.from_numpy(train_y)
    test_images, test_labels = torch.from_numpy(test_x[:, None]), torch.from_numpy(test_y)

    def evaluate() -> tuple[float, float]:
        with torch.no_grad():
            logits = model(test_images)
            return criterion(logits, test_labels).item(), hard_dice_score(logits.argmax(1).numpy(), test_y)

    before = evaluate()
    for step in _progress(steps, "torch  DiceLoss"):
        batch = slice((step * 16) % len(images), (step * 16) % len(images) + 16)
        optimizer.zero_grad()
        criterion(model(images[batch]), labels[batch]).backward()
        optimizer.step()
    return (*before, *evaluate())


def _demo_keras(steps: int, data: tuple[Split, Split]) -> tuple[float, float, float, float]:
    import keras

    from losses.keras import DiceLoss

    keras.utils.set_random_seed(0)
    (train_x, train_y), (test_x, test_y) = data
    model = keras.Sequential(
        [
            keras.Input((SIZE, SIZE, 1)),
            keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
            keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
            keras.layers.Conv2D(CLASSES, 1),
        ]
    )
    criterion = DiceLoss(mode="multiclass")
    model.compile(optimizer=keras.optimizers.Adam(0.02), loss=criterion)
    images, test_images = train_x[..., None], test_x[..., None]

    def evaluate() -> tuple[float, float]:
        logits = model.predict(test_images, verbose=0)
        return float(criterion(test_y, logits)), hard_dice_score(logits.argmax(-1), test_y)

    before = evaluate()
    for step in _progress(steps, f"keras  DiceLoss ({keras.backend.backend()})"):
        start = (step * 16) % len(images)
        model.train_on_batch(images[start : start + 16], train_y[start : start + 16])
    return (*before, *evaluate())


def run_demo(steps: int = 60, frameworks: list[str] | None = None) -> int:
    available = [
        name
        for name, module in (("torch", "torch"), ("keras", "keras"))
        if importlib.util.find_spec(module) is not None
    ]
    chosen = [f for f in (frameworks or available) if f in available]
    if not chosen:
        print("No framework is installed: pip install 'losses[torch]' or 'losses[tensorflow]'.")
        return 1
    data = (synthetic_shapes(128, seed=0), synthetic_shapes(32, seed=1))
    print(f"Segmenting discs and squares ({SIZE}x{SIZE}, {CLASSES} classes) with DiceLoss, {steps} steps each.\n")
    rows = []
    for name in chosen:
        start = time.perf_counter()
        result = (_demo_torch if name == "torch" else _demo_keras)(steps, data)
        rows.append((name, *result, time.perf_counter() - start))
    print(f"\n{'frontend':<10}{'loss before':>12}{'loss after':>12}{'Dice before':>13}{'Dice after':>12}{'seconds':>9}")
    for name, loss0, dice0, loss1, dice1, seconds in rows:
        print(f"{name:<10}{loss0:>12.3f}{loss1:>12.3f}{dice0:>13.3f}{dice1:>12.3f}{seconds:>9.1f}")

    from losses.doctor._demo import run_doctor_demo

    print("\nThe gradient-flow doctor on a loss that rounds its prediction, then on its repair:\n")
    return run_doctor_demo(frameworks=chosen)
