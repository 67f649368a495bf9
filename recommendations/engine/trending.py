"""Time-decayed popularity counters: what is trending right now.

A weight added at time t is worth w * 2**(-(now - t) / H) at time `now`,
H being the half-life. Rather than shrinking every counter as time passes,
each counter is kept in a fixed reference frame anchored at a time t0: an
add stores w * 2**((t - t0) / H), and a read multiplies the stored value
by 2**(-(now - t0) / H). Reads assume `now` is not earlier than the adds.
"""

import time

import numpy as np

from recommendations.engine.scoring import top_n

# Halvings after t0 at which the frame moves forward, so that stored values
# stay far from overflow (2**60 is about 1e18; floats reach 1e308).
REBASE_AFTER_HALVINGS = 60.0

# A capped counter prunes once it holds this share more than its cap, so
# the pruning's cost is shared by many adds.
PRUNE_SLACK = 0.1


def decay_factor(elapsed, half_life):
    """What is left of a weight of 1 after `elapsed` seconds."""
    return np.exp2(-np.divide(elapsed, half_life))


class TrendingCounter:
    """Decayed weights per string item id, read as scores at any moment."""

    def __init__(self, half_life_seconds, clock=time.time, max_items=None):
        if not np.isfinite(half_life_seconds) or half_life_seconds <= 0:
            raise ValueError("half_life_seconds must be a positive number")
        if max_items is not None and max_items < 1:
            raise ValueError("max_items must be at least 1")

        self.half_life = float(half_life_seconds)
        self.max_items = max_items
        self._clock = clock
        self._values = {}
        self._reference_time = None

    @property
    def reference_time(self):
        """The t0 of the frame the stored values are kept in, or None."""
        return self._reference_time

    def add(self, item_id, weight=1.0, at=None):
        at = self._clock() if at is None else float(at)
        self._move_frame_for(at)

        growth = self._growth_at(at)
        self._values[item_id] = self._values.get(item_id, 0.0) + weight * growth
        self._keep_bounded()

    def __len__(self):
        return len(self._values)

    def seed(self, counts, at):
        """Add every weight in `counts` as if it had happened at `at`."""
        at = float(at)
        self._move_frame_for(at)

        growth = self._growth_at(at)
        for item_id, weight in counts.items():
            self._values[item_id] = self._values.get(item_id, 0.0) + weight * growth
        self._keep_bounded()

    def scores(self, item_ids, now=None):
        """Decayed scores in the order of `item_ids`; 0 for unknown ids."""
        stored = np.fromiter(
            (self._values.get(item_id, 0.0) for item_id in item_ids),
            dtype=np.float64,
            count=len(item_ids),
        )
        return self._decayed(stored, now)

    def top(self, n, now=None):
        """The n items with the highest positive decayed score, best first."""
        item_ids = list(self._values)
        decayed = self._decayed(np.fromiter(self._values.values(), np.float64), now)

        best = top_n(decayed, n, excluded=decayed <= 0)
        return [(item_ids[i], float(decayed[i])) for i in best]

    def _decayed(self, stored, now):
        if self._reference_time is None:
            return np.zeros_like(stored)

        now = self._clock() if now is None else float(now)
        elapsed = now - self._reference_time
        # A dislike may outweigh what is left of the likes; clipping here
        # rather than on write keeps later likes from being inflated.
        return np.maximum(stored * decay_factor(elapsed, self.half_life), 0.0)

    def _growth_at(self, at):
        return float(decay_factor(self._reference_time - at, self.half_life))

    def _move_frame_for(self, at):
        if not self._values:
            self._reference_time = at
            return

        halvings = (at - self._reference_time) / self.half_life
        if halvings > REBASE_AFTER_HALVINGS:
            self._rebase(at)

    def _rebase(self, new_reference_time):
        shrink = float(
            decay_factor(new_reference_time - self._reference_time, self.half_life)
        )
        # A value that underflowed to zero can never count again.
        self._values = {
            item_id: value * shrink
            for item_id, value in self._values.items()
            if value * shrink != 0.0
        }
        self._reference_time = new_reference_time

    def _keep_bounded(self):
        """Keep the max_items strongest counts once there are too many.

        Every stored value is in the same frame, so the strongest now are
        the strongest at any later moment too.
        """
        if self.max_items is None:
            return
        if len(self._values) <= self.max_items * (1 + PRUNE_SLACK):
            return

        item_ids = list(self._values)
        stored = np.fromiter(self._values.values(), np.float64, len(item_ids))
        weakest = len(item_ids) - self.max_items
        dropped = np.argpartition(stored, weakest - 1)[:weakest]
        for index in dropped.tolist():
            del self._values[item_ids[index]]
