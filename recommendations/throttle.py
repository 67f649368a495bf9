"""Limits that keep one client from taking the server: a token bucket per
socket, and caps on the sockets open per end user and per address."""

import threading
import time
from collections import Counter


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


class SocketSlots:
    """Open sockets per end user and per client address, in this process.

    A cap of 0 means no cap. Each server process counts its own sockets,
    so the caps a deployment enforces are per process.
    """

    def __init__(self):
        self._by_user = Counter()
        self._by_address = Counter()
        self._lock = threading.Lock()

    def take(self, user_key, address, user_cap, address_cap):
        """Count one more socket, or return why it may not open."""
        with self._lock:
            if _full(self._by_user[user_key], user_cap):
                return f"this user already has {user_cap} open sockets"
            if address is not None and _full(self._by_address[address], address_cap):
                return f"this address already has {address_cap} open sockets"

            self._by_user[user_key] += 1
            if address is not None:
                self._by_address[address] += 1
        return None

    def give_back(self, user_key, address):
        with self._lock:
            _decrement(self._by_user, user_key)
            if address is not None:
                _decrement(self._by_address, address)

    def open_for_user(self, user_key):
        with self._lock:
            return self._by_user.get(user_key, 0)

    def __len__(self):
        with self._lock:
            return self._by_user.total()


def _full(count, cap):
    return cap > 0 and count >= cap


def _decrement(counter, key):
    # Keys at zero are dropped, so the maps hold only open sockets.
    counter[key] -= 1
    if counter[key] <= 0:
        del counter[key]


socket_slots = SocketSlots()
