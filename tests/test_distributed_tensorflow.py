"""Keras overlap losses with sync_across_ranks=True under tf.distribute.MirroredStrategy equal one device.

``model.fit`` under a MirroredStrategy over 2 logical CPU devices (each replica gets half of every
batch) is compared with ``model.fit`` on one device: the loss of each step and the parameters after
each step of plain SGD (lr = 1, so the change of a parameter is its gradient). The logical devices
must be configured before TensorFlow initialises its devices, so the runs happen in a subprocess:
this file run as a script.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")
pytest.importorskip("tensorflow")
pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="tf.distribute needs the TensorFlow backend"
)

ROOT = Path(__file__).resolve().parents[1]
STEPS = 3
# (name, Dice options)
CASES = [
    ("batch_sync", dict(per_image=False, sync_across_ranks=True)),
    ("batch_local", dict(per_image=False, sync_across_ranks=False)),
    ("image_sync", dict(per_image=True, sync_across_ranks=True)),
    ("batch_sync_sum", dict(per_image=False, sync_across_ranks=True, reduction="sum")),
    ("tversky_batch_sync", dict(loss="TverskyLoss", alpha=0.3, beta=0.7, per_image=False, sync_across_ranks=True)),
    ("generalized_batch_sync", dict(loss="GeneralizedDiceLoss", per_image=False, sync_across_ranks=True)),
]


def _run_all(out: str) -> None:
    """In a fresh process: every case on one device and under MirroredStrategy on two."""
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras

    import losses.keras

    rng = np.random.default_rng(0)
    images = rng.normal(size=(4, 8, 8, 2)).astype("float32")
    labels = rng.integers(0, 3, size=(4, 8, 8))
    labels[:2] = 2 * (labels[:2] > 0)  # class 1 absent from the first replica: local batch Dice is far off

    def build():
        keras.utils.set_random_seed(0)
        return keras.Sequential(
            [
                keras.Input((8, 8, 2)),
                keras.layers.Conv2D(4, 3, padding="same", activation="tanh"),
                keras.layers.Conv2D(3, 1),
            ]
        )

    def fit(model, options):
        options = dict(options)
        loss = getattr(losses.keras, options.pop("loss", "DiceLoss"))(mode="multiclass", **options)
        model.compile(optimizer=keras.optimizers.SGD(learning_rate=1.0), loss=loss)
        params = [[w.tolist() for w in model.get_weights()]]
        save = keras.callbacks.LambdaCallback(
            on_epoch_end=lambda epoch, logs: params.append([w.tolist() for w in model.get_weights()])
        )
        # One step per epoch, so that each epoch's loss is that of one step.
        history = model.fit(images, labels, batch_size=4, epochs=STEPS, shuffle=False, verbose=0, callbacks=[save])
        return {"loss": history.history["loss"], "params": params}

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert strategy.num_replicas_in_sync == 2
    results = {}
    for name, options in CASES:
        single = fit(build(), options)
        with strategy.scope():
            mirrored = fit(build(), options)
        results[name] = {"single": single, "mirrored": mirrored}
    logits = rng.normal(size=(3, 8, 8, 3)).astype("float32")
    results["empty_replica"] = _empty_replica(strategy, logits, labels[:3])
    Path(out).write_text(json.dumps(results))


def _empty_replica(strategy, logits, labels) -> dict:
    """3 images on the first replica and none on the second (the last batch of an epoch with fewer
    images than replicas), through strategy.run: each replica's loss and the first's gradient, and
    those of one device."""
    import tensorflow as tf

    import losses.keras

    out = {}
    slices = (slice(0, 3), slice(3, 3))
    for name, make in (
        ("DiceLoss", lambda: losses.keras.DiceLoss(mode="multiclass", per_image=False, sync_across_ranks=True)),
        ("DiceCELoss", lambda: losses.keras.DiceCELoss(mode="multiclass", per_image=False, sync_across_ranks=True)),
    ):
        loss = make()
        x = tf.constant(logits)
        with tf.GradientTape() as tape:
            tape.watch(x)
            one = loss(tf.constant(labels), x)
        grad = tape.gradient(one, x)
        values = strategy.experimental_distribute_values_from_function(
            lambda ctx: (
                tf.constant(labels[slices[ctx.replica_id_in_sync_group]]),
                tf.constant(logits[slices[ctx.replica_id_in_sync_group]]),
            )
        )

        @tf.function
        def step(v, loss=loss):
            def replica(pair):
                t, p = pair
                with tf.GradientTape() as tape:
                    tape.watch(p)
                    value = loss(t, p)
                return value, tape.gradient(value, p)

            return strategy.run(replica, args=(v,))

        values_out, grads = step(values)
        out[name] = {
            "replicas": [float(v.numpy()) for v in strategy.experimental_local_results(values_out)],
            "grad": strategy.experimental_local_results(grads)[0].numpy().tolist(),
            "single": float(one.numpy()),
            "single_grad": grad.numpy().tolist(),
        }
    return out


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("mirrored") / "results.json"
    env = {
        **os.environ,
        "KERAS_BACKEND": "tensorflow",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    run = subprocess.run(
        [sys.executable, __file__, str(out)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=240
    )
    assert run.returncode == 0, run.stdout + run.stderr
    return json.loads(out.read_text())


def _gradients(params: list) -> list:
    """With SGD at lr = 1: the gradient of each step is the parameters' decrease."""
    return [
        [np.subtract(before, after) for before, after in zip(params[k], params[k + 1])] for k in range(len(params) - 1)
    ]


def _same_losses(a: dict, b: dict) -> bool:
    return np.allclose(a["loss"], b["loss"], rtol=1e-5, atol=1e-6)


def _same_gradients(a: dict, b: dict) -> bool:
    return all(
        np.allclose(ga, gb, rtol=1e-4, atol=1e-6)
        for step_a, step_b in zip(_gradients(a["params"]), _gradients(b["params"]))
        for ga, gb in zip(step_a, step_b)
    )


@pytest.mark.parametrize("name", [c[0] for c in CASES if c[1]["sync_across_ranks"]])
def test_mirrored_with_sync_equals_one_device(results, name):
    case = results[name]
    assert len(case["mirrored"]["loss"]) == STEPS
    assert _same_losses(case["mirrored"], case["single"]), (case["mirrored"]["loss"], case["single"]["loss"])
    assert _same_gradients(case["mirrored"], case["single"])


@pytest.mark.parametrize("name", ["DiceLoss", "DiceCELoss"])
def test_a_replica_without_images_keeps_the_batch_loss_and_gradient(results, name):
    """Each replica's loss is the batch loss over the replicas (also where it has no image: not
    0/0), so that their sum is one device's loss and the all-reduce hands the first replica all of
    its gradient, not half."""
    case = results["empty_replica"][name]
    assert np.isfinite(case["replicas"]).all(), case["replicas"]
    np.testing.assert_allclose(sum(case["replicas"]), case["single"], rtol=1e-5)
    np.testing.assert_allclose(case["grad"], case["single_grad"], rtol=1e-4, atol=1e-7)


def test_mirrored_without_sync_differs_from_one_device(results):
    case = results["batch_local"]
    assert not np.allclose(case["mirrored"]["loss"][0], case["single"]["loss"][0], rtol=1e-2)
    assert not _same_gradients(case["mirrored"], case["single"])


def test_sync_without_a_strategy_changes_nothing(results):
    # On one device the option is a no-op: the runs with and without it are identical.
    assert results["batch_sync"]["single"] == results["batch_local"]["single"]


def test_sync_across_ranks_round_trips_through_the_config():
    from losses.keras import DiceLoss

    loss = DiceLoss(per_image=False, sync_across_ranks=True)
    assert loss.get_config()["sync_across_ranks"] is True
    assert DiceLoss.from_config(loss.get_config()).options == loss.options


if __name__ == "__main__":
    _run_all(sys.argv[1])
