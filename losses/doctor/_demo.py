"""The doctor's part of ``python -m losses demo``: a broken loss, then the same loss repaired with
a smooth surrogate of this package."""

from __future__ import annotations

import importlib.util


def broken_quantized_mse(input, target):
    levels = input.mul(4).round().div(4)  # quantize the prediction to quarter steps: zero gradient
    return ((levels - target) ** 2).mean()


def repaired_quantized_mse(input, target):
    from losses.torch import soft_round

    levels = soft_round(input * 4, 4.0) / 4  # the same quantization, with a gradient
    return ((levels - target) ** 2).mean()


def run_doctor_demo(print_fn=print) -> int:
    """Diagnose :func:`broken_quantized_mse` and :func:`repaired_quantized_mse`; 0 when the repair is clean."""
    if importlib.util.find_spec("torch") is None:
        print_fn("doctor: PyTorch is not installed; skipped")
        return 0
    import torch

    from losses.doctor import diagnose

    generator = torch.Generator().manual_seed(0)
    y_pred = torch.rand(8, 4, generator=generator)
    y_true = torch.rand(8, 4, generator=generator)
    print_fn("doctor: a loss that rounds its prediction")
    print_fn(diagnose(broken_quantized_mse, y_true, y_pred).to_text())
    try:
        from losses.torch import soft_round  # noqa: F401
    except ImportError:
        print_fn("doctor: losses.torch.soft_round is not available in this build; repaired loss skipped")
        return 0
    print_fn("doctor: the same loss with losses.torch.soft_round")
    report = diagnose(repaired_quantized_mse, y_true, y_pred)
    print_fn(report.to_text())
    return 0 if report.ok else 1
