"""Role matrix and login throttling.  Deny by default: a permission not listed here is refused."""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Optional

from qc_pipeline.web.db import ROLES, User

# permission -> roles that hold it
PERMISSIONS: dict[str, frozenset[str]] = {
    "login": frozenset(ROLES),                                          # any logged-in user
    "queue": frozenset({"reviewer", "admin"}),
    "sessions": frozenset({"reviewer", "trainer", "agent", "admin"}),  # agents: own calls only
    "review": frozenset({"reviewer", "admin"}),                        # confirm / override (复核)
    "appeal": frozenset({"agent"}),                                     # 申诉, own calls only
    "appeal_decision": frozenset({"admin"}),
    "calibration": frozenset({"reviewer", "trainer", "admin"}),
    "reports": frozenset({"trainer", "admin"}),
    "export": frozenset({"trainer", "admin"}),
    "users": frozenset({"admin"}),
    "workflow": frozenset({"reviewer", "admin"}),                      # claim / release / done
    "appeals": frozenset({"admin"}),                                    # list of pending appeals
    "audit": frozenset({"admin"}),
}

ACTION_PERMISSION = {"confirm": "review", "override": "review", "appeal": "appeal",
                     "appeal_decision": "appeal_decision"}

HOME = {"reviewer": "/queue", "admin": "/queue", "trainer": "/reports", "agent": "/sessions"}


def allowed(user: Optional[User], permission: str) -> bool:
    return user is not None and user.role in PERMISSIONS.get(permission, frozenset())


def can_see(user: Optional[User], session_agent_id: Optional[str]) -> bool:
    """Agents see only their own calls; other roles with ``sessions`` see all."""
    if not allowed(user, "sessions"):
        return False
    if user.role == "agent":
        return bool(user.agent_id) and user.agent_id == session_agent_id
    return True


@dataclass
class _Entry:
    failures: list = field(default_factory=list)   # monotonic times of recent failures
    strikes: int = 0                               # lock-outs so far (backoff doubles per strike)
    locked_until: float = 0.0
    last: float = 0.0


class LoginThrottle:
    """Failed logins are counted per (user name, address): ``max_failures`` within ``window_s`` lock that
    pair for ``lock_s``, doubling per further lock-out up to ``max_lock_s``; a success clears the pair.
    Someone guessing from another address therefore never locks a user out of their own address.  An
    address is also refused for ``lock_s`` once it has ``address_failures`` failures within ``window_s``
    over all names (spraying many names).

    A password check is reserved with :meth:`try_acquire` *before* hashing and ended with
    :meth:`failed`, :meth:`succeeded` or :meth:`release`; checks in flight count toward the limits,
    so parallel attempts cannot all pass while the first ones are still hashing.  Entries with no
    lock-out are dropped once their failures are older than the window, locked ones when their
    strikes expire (``strike_ttl_s``); long names are keyed by their hash, so memory stays bounded.
    """

    def __init__(self, max_failures: int = 5, window_s: float = 300.0, lock_s: float = 300.0,
                 max_lock_s: float = 3600.0, address_failures: int = 50, strike_ttl_s: float = 86400.0) -> None:
        self.max_failures, self.window_s, self.lock_s = max_failures, window_s, lock_s
        self.max_lock_s, self.address_failures, self.strike_ttl_s = max_lock_s, address_failures, strike_ttl_s
        self._entries: OrderedDict[tuple[str, str], _Entry] = OrderedDict()  # least recently active first
        self._addr: dict[str, list[float]] = {}
        self._pending: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries) + len(self._pending)

    @staticmethod
    def _key(username: str, address: str) -> tuple[str, str]:
        name = username.casefold()
        if len(name) > 64:
            name = "#" + hashlib.sha256(name.encode("utf-8", "replace")).hexdigest()
        return name, address[:64]

    def _prune(self, now: float) -> None:
        while self._entries:
            key, e = next(iter(self._entries.items()))
            horizon = self.strike_ttl_s if e.strikes else self.window_s
            if now - e.last < max(horizon, e.locked_until - e.last):
                break
            del self._entries[key]
        for addr in [a for a, ts in self._addr.items() if not ts or now - ts[-1] >= self.window_s]:
            del self._addr[addr]

    def _refused(self, key: tuple[str, str], now: float) -> float:
        """Seconds until ``key`` may try again (0: now)."""
        self._prune(now)
        e = self._entries.get(key)
        pending = self._pending.get(key, 0)
        if e and e.locked_until > now:
            return e.locked_until - now
        recent = [t for t in e.failures if now - t < self.window_s] if e else []
        if len(recent) + pending >= self.max_failures:
            return self.lock_s
        addr_recent = [t for t in self._addr.get(key[1], ()) if now - t < self.window_s]
        addr_pending = sum(n for k, n in self._pending.items() if k[1] == key[1])
        if len(addr_recent) + addr_pending >= self.address_failures:
            return self.window_s - (now - addr_recent[0]) if addr_recent else self.lock_s
        return 0.0

    def retry_after(self, username: str, address: str = "") -> float:
        with self._lock:
            return self._refused(self._key(username, address), time.monotonic())

    def locked(self, username: str, address: str = "") -> bool:
        return self.retry_after(username, address) > 0

    def try_acquire(self, username: str, address: str = "") -> bool:
        """Reserve one password check; False while the (user, address) pair or the address is locked out."""
        with self._lock:
            key = self._key(username, address)
            if self._refused(key, time.monotonic()):
                return False
            self._pending[key] = self._pending.get(key, 0) + 1
            return True

    def _end(self, key: tuple[str, str]) -> None:
        left = self._pending.get(key, 0) - 1
        if left > 0:
            self._pending[key] = left
        else:
            self._pending.pop(key, None)

    def release(self, username: str, address: str = "") -> None:
        """The reserved check ended without a verdict (e.g. a database error)."""
        with self._lock:
            self._end(self._key(username, address))

    def failed(self, username: str, address: str = "") -> None:
        with self._lock:
            key, now = self._key(username, address), time.monotonic()
            self._end(key)
            e = self._entries.pop(key, None) or _Entry()
            e.failures = [t for t in e.failures if now - t < self.window_s] + [now]
            e.last = now
            if len(e.failures) >= self.max_failures:
                e.strikes += 1
                e.locked_until = now + min(self.max_lock_s, self.lock_s * 2 ** (e.strikes - 1))
                e.failures = []
            self._entries[key] = e  # to the end: most recently active
            self._addr.setdefault(key[1], []).append(now)
            self._addr[key[1]] = [t for t in self._addr[key[1]] if now - t < self.window_s]

    def succeeded(self, username: str, address: str = "") -> None:
        with self._lock:
            key = self._key(username, address)
            self._end(key)
            self._entries.pop(key, None)
