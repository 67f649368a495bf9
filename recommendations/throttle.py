"""A token bucket per socket, so one client cannot flood the server."""

import time


class TokenBucket:
    """Allows `rate` messages a second on average, `burst` at once."""

    def __init__(self, rate, burst, clock=time.monotonic):
        self.rate = float(rate)
        self.burst = float(burst)
        self._clock = clock
        self._tokens = float(burst)
        self._updated = clock()

    def allow(self):
        now = self._clock()
        elapsed = now - self._updated
        self._tokens = min(self.burst, self._tokens + elapsed * self.rate)
        self._updated = now

        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True
