import os

from hypothesis import HealthCheck, settings

# CI runs derandomized with a bounded number of examples; locally, more and random.
settings.register_profile(
    "ci", derandomize=True, max_examples=20, deadline=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.differing_executors],
)
settings.register_profile(
    "dev", max_examples=60, deadline=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.differing_executors],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))

if os.environ.get("KERAS_BACKEND") == "jax":
    # Gradient checks run in float64, which JAX disables by default.
    import jax

    jax.config.update("jax_enable_x64", True)
