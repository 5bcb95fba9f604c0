"""Role matrix and login throttling.  Deny by default: a permission not listed here is refused."""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
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


class LoginThrottle:
    """Lock a user name out for ``lock_s`` after ``max_failures`` failures within ``window_s``.

    A password check is reserved with :meth:`try_acquire` *before* hashing and ended with
    :meth:`failed`, :meth:`succeeded` or :meth:`release`; checks in flight count toward the limit,
    so parallel attempts cannot all pass while the first ones are still hashing.  Names whose
    failures all expired are dropped on every call (oldest first), so memory stays bounded by the
    hashing rate times the window; long names are keyed by their hash.
    """

    def __init__(self, max_failures: int = 5, window_s: float = 300.0, lock_s: float = 300.0) -> None:
        self.max_failures, self.window_s, self.lock_s = max_failures, window_s, lock_s
        self._failures: OrderedDict[str, list[float]] = OrderedDict()  # least recently failed first
        self._pending: dict[str, int] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._failures) + len(self._pending)

    @staticmethod
    def _key(username: str) -> str:
        if len(username) <= 64:
            return username
        return "#" + hashlib.sha256(username.encode("utf-8", "replace")).hexdigest()

    def _recent(self, key: str, now: float) -> list[float]:
        """Drop the names whose failures all expired; the recent failures of ``key``."""
        horizon = max(self.window_s, self.lock_s)
        while self._failures:
            oldest = next(iter(self._failures))
            if now - self._failures[oldest][-1] < horizon:
                break
            del self._failures[oldest]
        return [t for t in self._failures.get(key, ()) if now - t < horizon]

    def _refused(self, key: str, now: float) -> bool:
        recent, pending = self._recent(key, now), self._pending.get(key, 0)
        if len(recent) + pending < self.max_failures:
            return False
        return pending > 0 or now - recent[-1] < self.lock_s

    def locked(self, username: str) -> bool:
        with self._lock:
            return self._refused(self._key(username), time.monotonic())

    def try_acquire(self, username: str) -> bool:
        """Reserve one password check for ``username``; False while it is locked out."""
        with self._lock:
            key = self._key(username)
            if self._refused(key, time.monotonic()):
                return False
            self._pending[key] = self._pending.get(key, 0) + 1
            return True

    def _end(self, key: str) -> None:
        left = self._pending.get(key, 0) - 1
        if left > 0:
            self._pending[key] = left
        else:
            self._pending.pop(key, None)

    def release(self, username: str) -> None:
        """The reserved check ended without a verdict (e.g. a database error)."""
        with self._lock:
            self._end(self._key(username))

    def failed(self, username: str) -> None:
        with self._lock:
            key, now = self._key(username), time.monotonic()
            self._end(key)
            self._failures[key] = (self._recent(key, now) + [now])[-self.max_failures:]
            self._failures.move_to_end(key)

    def succeeded(self, username: str) -> None:
        with self._lock:
            key = self._key(username)
            self._end(key)
            self._failures.pop(key, None)
