import os

try:
    # Triton (imported by torch.compile and the kernels) and TensorFlow both bundle LLVM; importing
    # Triton after TensorFlow aborts the process ("inconsistency in registered CommandLine options").
    import triton  # noqa: F401
except ImportError:
    pass

from hypothesis import HealthCheck, settings

# CI runs derandomized with a bounded number of examples; locally, more and random.
settings.register_profile(
    "ci",
    derandomize=True,
    max_examples=20,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.differing_executors],
)
settings.register_profile(
    "dev",
    max_examples=60,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.differing_executors],
)
# The Keras suite re-run on the torch and JAX backends (tests/test_keras_backends.py): fewer examples.
settings.register_profile(
    "ci-backends",
    derandomize=True,
    max_examples=5,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.differing_executors],
)
# By hand, for the robustness suites and any other property test: many random examples.
settings.register_profile(
    "long",
    max_examples=2000,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.differing_executors, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))

if os.environ.get("KERAS_BACKEND") == "jax":
    # Gradient checks run in float64, which JAX disables by default.
    import jax

    jax.config.update("jax_enable_x64", True)
