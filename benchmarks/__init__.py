"""Benchmarks of every loss in ``losses`` against the peers users would pick instead.

Run ``python -m benchmarks --help``. Every row of a case computes the same loss value and gradient
(checked against a float64 reference before anything is timed); the results land in
``benchmarks/results/<device>.{json,md,png}``.
"""
