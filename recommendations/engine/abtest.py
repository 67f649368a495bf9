"""Statistics for comparing two arms of an experiment."""

import hashlib
import math
from dataclasses import dataclass

Z_95 = 1.959963984540054


def arm_share(experiment, user_id):
    """A stable number in [0, 1) for a user in an experiment.

    Hashing the experiment's name with the user's id keeps a user in the
    same arm on every request and every process, and independent of the
    arm they drew in any other experiment.
    """
    digest = hashlib.sha256(f"{experiment}\x1f{user_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def wilson_interval(successes, trials, z=Z_95):
    """The Wilson score interval of a proportion: (low, high)."""
    if trials == 0:
        return (0.0, 0.0)
    share = successes / trials
    spread = z * math.sqrt(share * (1 - share) / trials + z * z / (4 * trials**2))
    centre = share + z * z / (2 * trials)
    scale = 1 + z * z / trials
    return ((centre - spread) / scale, (centre + spread) / scale)


@dataclass(frozen=True)
class Comparison:
    difference: float
    z: float
    p_value: float

    @property
    def significant(self):
        return self.p_value < 0.05


def compare_rates(successes_a, trials_a, successes_b, trials_b):
    """Two-sided two-proportion z-test of rate b against rate a."""
    if trials_a == 0 or trials_b == 0:
        return Comparison(0.0, 0.0, 1.0)
    rate_a, rate_b = successes_a / trials_a, successes_b / trials_b
    pooled = (successes_a + successes_b) / (trials_a + trials_b)
    error = math.sqrt(pooled * (1 - pooled) * (1 / trials_a + 1 / trials_b))
    if error == 0:
        return Comparison(rate_b - rate_a, 0.0, 1.0)
    z = (rate_b - rate_a) / error
    return Comparison(rate_b - rate_a, z, math.erfc(abs(z) / math.sqrt(2)))
