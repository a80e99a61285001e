"""Broken and healthy losses that the gradient-flow doctor is tested on.

Each broken loss marks the line the doctor must point at with a comment ``# expect: CODE``.
Functions named ``partial_*`` still send a gradient to part of the prediction: their finding is a
warning; every other broken loss gives errors. ``SHAPES`` gives ``(pred_shape, true_shape)`` where the default ``(8, 4), (8, 4)`` does not fit.
"""
