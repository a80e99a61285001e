"""Float64 NumPy reference of every loss and surrogate: the single oracle of the test suite.

Written for clarity, not speed: label maps are expanded to one-hot here (never in the package),
loops follow the formulas in the docstrings. Channels first, as in the PyTorch frontend; the Keras
tests move the channel axis before comparing.
"""

from __future__ import annotations

import numpy as np


# ----------------------------------------------------------------------------------------------
# Dice
# ----------------------------------------------------------------------------------------------


# ----------------------------------------------------------------------------------------------
# Penalized MAE
# ----------------------------------------------------------------------------------------------


# ----------------------------------------------------------------------------------------------
# Surrogates
# ----------------------------------------------------------------------------------------------
