"""Limits that keep one client from taking the server: a token bucket per
socket, and caps on the sockets open per end user and per address.

The caps are counted in this process, or, when REDIS_URL is set, in Redis
for every server process at once (and in this process again while Redis
does not answer).
"""

import asyncio
import functools
import logging
import math
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import redis
from django.conf import settings

from recommendations.redis_outage import Outage, quick_client

logger = logging.getLogger(__name__)

KEY_PREFIX = "rtrec:sockets"

# A live socket refreshes its slot every WS_GROUP_REFRESH_SECONDS. A slot
# not refreshed for this many intervals belonged to a process that died.
SLOT_LIFETIME_REFRESHES = 3

# How long an unreachable Redis is left alone before it is tried again,
# so a dead server costs one connect timeout now and then, not one a socket.
RETRY_REDIS_AFTER_SECONDS = 5.0

# Drops the expired members of each set, then adds the socket to all of
# them, or to none if one is full: 0 if taken, else the full set's number.
# KEYS: the user's set, then the address's if there is one.
# ARGV: now, the slot's expiry, socket id, key lifetime, one cap a key.
TAKE_SCRIPT = """
for i, key in ipairs(KEYS) do
    redis.call('ZREMRANGEBYSCORE', key, '-inf', ARGV[1])
    local cap = tonumber(ARGV[4 + i])
    if cap > 0 and redis.call('ZCARD', key) >= cap
            and not redis.call('ZSCORE', key, ARGV[3]) then
        return i
    end
end
for _, key in ipairs(KEYS) do
    redis.call('ZADD', key, ARGV[2], ARGV[3])
    redis.call('EXPIRE', key, ARGV[4])
end
return 0
"""


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


class Slot:
    """One open socket's place under the caps.

    `shared` is the Redis store that counts it, or None when this process
    does; it is chosen once, so the slot goes back where it was taken.
    """

    def __init__(self, user_key, address, socket_id, shared=None):
        self.user_key = user_key
        self.address = address
        self.socket_id = socket_id
        self.shared = shared
        self.refreshed_at = time.monotonic()

    def __repr__(self):
        return f"Slot({self.user_key!r}, {self.address!r}, {self.socket_id!r})"


class SocketSlots:
    """Open sockets per end user and per client address, in this process.

    A cap of 0 means no cap.
    """

    def __init__(self):
        self._by_user = Counter()
        self._by_address = Counter()
        self._lock = threading.Lock()

    def take(self, user_key, address, user_cap, address_cap):
        """Count one more socket, or return why it may not open."""
        with self._lock:
            if _full(self._by_user[user_key], user_cap):
                return _user_full(user_cap)
            if address is not None and _full(self._by_address[address], address_cap):
                return _address_full(address_cap)

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


class RedisSocketSlots:
    """Open sockets per end user and per address, counted in Redis for
    every server process.

    Each slot is a member of two sorted sets, its user's and its
    address's, scored by when it expires. A live socket pushes that on
    with `refresh`; every take first drops the members past it, so the
    slots of a process that died free themselves within `lifetime`.

    While Redis does not answer, slots are counted in this process as
    without Redis; a refresh moves a slot to wherever it is counted now.
    """

    def __init__(self, url, lifetime, key_prefix=KEY_PREFIX, clock=time.time):
        self.lifetime = float(lifetime)
        self.key_prefix = key_prefix
        self._clock = clock
        self._client = quick_client(url)
        self._take_script = self._client.register_script(TAKE_SCRIPT)
        self._here = SocketSlots()
        self._held_here = set()
        self._lock = threading.Lock()
        self._outage = Outage(
            "socket caps",
            "each process counts its own sockets until it is back",
            logger,
            RETRY_REDIS_AFTER_SECONDS,
        )

    def close(self):
        """Release this store's Redis connections."""
        self._client.close()

    def take(self, slot, user_cap, address_cap):
        """Count one more socket, or return why it may not open."""
        if self._outage.resting:
            return self._take_here(slot, user_cap, address_cap)
        try:
            full = self._take_in_redis(slot, user_cap, address_cap)
        except redis.RedisError as exc:
            self._outage.failed(exc)
            return self._take_here(slot, user_cap, address_cap)

        self._outage.answered()
        if full == 1:
            return _user_full(user_cap)
        if full == 2:
            return _address_full(address_cap)
        return None

    def refresh(self, slot):
        """Keep a live socket's slot from expiring."""
        if not self._outage.resting:
            try:
                self._write(slot, lambda pipe, key: self._add(pipe, key, slot))
            except redis.RedisError as exc:
                self._outage.failed(exc)
            else:
                self._outage.answered()
                self._forget_here(slot)
                return
        self._count_here(slot)

    def give_back(self, slot):
        self._forget_here(slot)
        if self._outage.resting:
            return  # Not refreshed any more, it expires in Redis.
        try:
            self._write(slot, lambda pipe, key: pipe.zrem(key, slot.socket_id))
        except redis.RedisError as exc:
            self._outage.failed(exc)

    def open_for_user(self, user_key):
        here = self._here.open_for_user(user_key)
        try:
            key = self._key("user", user_key)
            return here + self._client.zcount(key, f"({self._clock()}", "+inf")
        except redis.RedisError:
            return here

    def _take_in_redis(self, slot, user_cap, address_cap):
        keys, caps = [self._key("user", slot.user_key)], [user_cap]
        if slot.address is not None:
            keys.append(self._key("address", slot.address))
            caps.append(address_cap)

        now = self._clock()
        args = [now, now + self.lifetime, slot.socket_id, self._key_lifetime()]
        return self._take_script(keys=keys, args=args + caps)

    def _write(self, slot, command):
        """One command on each of the slot's sets, in one round trip."""
        pipe = self._client.pipeline(transaction=True)
        command(pipe, self._key("user", slot.user_key))
        if slot.address is not None:
            command(pipe, self._key("address", slot.address))
        pipe.execute()

    def _add(self, pipe, key, slot):
        # Added even if the set is full: the socket is open already, and
        # Redis may have restarted and forgotten it.
        pipe.zadd(key, {slot.socket_id: self._clock() + self.lifetime})
        pipe.expire(key, self._key_lifetime())

    def _key(self, kind, value):
        return f"{self.key_prefix}:{kind}:{value}"

    def _key_lifetime(self):
        # Whole seconds, and one more than any member in the set lives.
        return math.ceil(self.lifetime) + 1

    def _take_here(self, slot, user_cap, address_cap):
        with self._lock:
            why = self._here.take(slot.user_key, slot.address, user_cap, address_cap)
            if why is None:
                self._held_here.add(slot.socket_id)
        return why

    def _count_here(self, slot):
        with self._lock:
            if slot.socket_id not in self._held_here:
                self._here.take(slot.user_key, slot.address, 0, 0)
                self._held_here.add(slot.socket_id)

    def _forget_here(self, slot):
        with self._lock:
            if slot.socket_id in self._held_here:
                self._held_here.discard(slot.socket_id)
                self._here.give_back(slot.user_key, slot.address)


class SlotKeeper:
    """The caps as the consumer sees them: slots are taken, refreshed and
    given back here, in Redis when the settings name one.

    Redis calls run on one thread of their own, so they never hold up the
    event loop, and a socket's last refresh reaches Redis before its
    give-back.
    """

    def __init__(self):
        self.here = SocketSlots()
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="rtrec-slots")

    def slot(self, user_key, address, socket_id):
        return Slot(user_key, address, socket_id, shared_slots())

    async def take(self, slot, user_cap, address_cap):
        """Count one more socket, or return why it may not open."""
        if slot.shared is None:
            return self.here.take(slot.user_key, slot.address, user_cap, address_cap)

        taking = self._worker.submit(slot.shared.take, slot, user_cap, address_cap)
        try:
            return await asyncio.wrap_future(taking)
        except asyncio.CancelledError:
            # The take may still happen; this runs after it.
            self._worker.submit(slot.shared.give_back, slot)
            raise

    async def refresh(self, slot):
        # Housekeeping wakes every second while the channel layer is down;
        # Redis hears from a slot at most twice an interval even then.
        if slot is None or slot.shared is None:
            return
        interval = slot.shared.lifetime / SLOT_LIFETIME_REFRESHES
        if time.monotonic() - slot.refreshed_at < interval / 2:
            return

        slot.refreshed_at = time.monotonic()
        await asyncio.wrap_future(self._worker.submit(slot.shared.refresh, slot))

    def give_back(self, slot):
        """Free the slot; a shared one is removed from Redis soon after."""
        if slot.shared is None:
            self.here.give_back(slot.user_key, slot.address)
        else:
            self._worker.submit(slot.shared.give_back, slot)

    def open_for_user(self, user_key):
        return (shared_slots() or self.here).open_for_user(user_key)


def _full(count, cap):
    return cap > 0 and count >= cap


def _user_full(cap):
    return f"this user already has {cap} open sockets"


def _address_full(cap):
    return f"this address already has {cap} open sockets"


def _decrement(counter, key):
    # Keys at zero are dropped, so the maps hold only open sockets.
    counter[key] -= 1
    if counter[key] <= 0:
        del counter[key]


def shared_slots():
    """The Redis store of socket slots the settings name, or None."""
    rtrec = settings.RTREC
    url = rtrec.get("REDIS_URL")
    if not url:
        return None
    lifetime = SLOT_LIFETIME_REFRESHES * rtrec["WS_GROUP_REFRESH_SECONDS"]
    return _shared_slots(url, lifetime)


@functools.cache
def _shared_slots(url, lifetime):
    return RedisSocketSlots(url, lifetime)


def forget_shared_slots():
    """Drop this process's shared slot stores; the next socket makes new
    ones, while slots already taken go back to the store they came from."""
    _shared_slots.cache_clear()


socket_slots = SlotKeeper()
