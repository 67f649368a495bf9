"""Redis as an optional shared store beside the process's own.

Trending counts and socket caps live in Redis when REDIS_URL is set and
fall back to the process while it does not answer. Both use a client that
gives up quickly, and one Outage each: a failure is logged once, and
Redis is left alone for a few seconds before it is tried again, so a dead
server costs one connect timeout now and then, not one a request.
"""

import time

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry


def quick_client(url):
    """A Redis client that retries once: that absorbs a dropped idle
    connection, while a longer outage goes to the caller's fallback."""
    return redis.Redis.from_url(
        url,
        socket_connect_timeout=1.0,
        socket_timeout=1.0,
        retry=Retry(NoBackoff(), retries=1),
    )


class Outage:
    """Whether Redis is down for one purpose, and the log lines saying so,
    written to the logger of the store that falls back."""

    def __init__(self, purpose, fallback, logger, retry_after):
        self.purpose, self.fallback = purpose, fallback
        self.logger, self.retry_after = logger, retry_after
        self._retry_at = 0.0

    @property
    def resting(self):
        """True while a recent failure says not to try Redis yet."""
        return time.monotonic() < self._retry_at

    def failed(self, exc):
        already_down = self._retry_at > 0
        self._retry_at = time.monotonic() + self.retry_after
        if already_down:
            self.logger.debug(
                "Redis is still unreachable for %s: %s", self.purpose, exc
            )
            return
        self.logger.warning(
            "Redis is unreachable for %s (%s); %s", self.purpose, exc, self.fallback
        )

    def answered(self):
        if self._retry_at > 0:
            self._retry_at = 0.0
            self.logger.info("Redis is reachable again for %s", self.purpose)
