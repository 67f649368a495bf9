"""A socket's recent answers, shown again while nothing behind them changed.

A page that asks for recommendations again without its user having acted
would get the same list: the same model, the same folded-in user, the
same catalog. Rebuilding it costs a query and a pass over the catalog, so
each socket keeps the lists it sent and shows them again, each time as a
new list with its own recommendation_id, recorded as shown.

A kept list is dropped when the user acts (every event of theirs, in any
process, reaches this socket as a push), when a model version is
announced, when this process loads another catalog, model or experiment,
and in any case after `RTREC_ANSWER_REUSE_SECONDS`, which bounds how long
a change this socket was not told about (a catalog edit in another
process, trending counts) can go unseen.
"""

import time
import uuid
from dataclasses import dataclass

# A socket asks with few shapes of request; past this many kept lists
# the oldest go, so a client cycling through excludes cannot grow it.
MAX_KEPT = 8


@dataclass(frozen=True)
class KeptAnswer:
    payload: dict
    experiment_pk: int | None
    served_by: tuple
    expires_at: float


class AnswerCache:
    def __init__(self, seconds):
        self.seconds = seconds
        self._kept = {}

    def get(self, key, served_by):
        """A kept payload for `key` with a fresh recommendation_id, or None.

        `served_by` is what the process serves now (see
        ModelHolder.served_by); a list made under anything else is stale.
        """
        kept = self._kept.get(key)
        if kept is None:
            return None
        expired = time.monotonic() >= kept.expires_at
        if expired or not same_source(kept.served_by, served_by):
            del self._kept[key]
            return None
        payload = dict(kept.payload, recommendation_id=str(uuid.uuid4()))
        return payload, kept.experiment_pk

    def keep(self, key, payload, experiment_pk, served_by):
        if self.seconds <= 0:
            return
        if key not in self._kept and len(self._kept) >= MAX_KEPT:
            del self._kept[next(iter(self._kept))]
        expires_at = time.monotonic() + self.seconds
        self._kept[key] = KeptAnswer(payload, experiment_pk, served_by, expires_at)

    def clear(self):
        self._kept.clear()

    def __len__(self):
        return len(self._kept)


def same_source(before, now):
    """Whether two ModelHolder.served_by snapshots are the same."""
    # Snapshots hold large arrays, so identity, not equality.
    return len(before) == len(now) and all(
        a is b for a, b in zip(before, now, strict=True)
    )
