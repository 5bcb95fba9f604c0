"""Role matrix and login throttling.  Deny by default: a permission not listed here is refused."""

from __future__ import annotations

import threading
import time
from typing import Optional

from qc_pipeline.web.db import User

# permission -> roles that hold it
PERMISSIONS: dict[str, frozenset[str]] = {
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
    """Lock a user name out for ``lock_s`` after ``max_failures`` failures within ``window_s``."""

    def __init__(self, max_failures: int = 5, window_s: float = 300.0, lock_s: float = 300.0) -> None:
        self.max_failures, self.window_s, self.lock_s = max_failures, window_s, lock_s
        self._failures: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def locked(self, username: str) -> bool:
        with self._lock:
            now = time.monotonic()
            recent = [t for t in self._failures.get(username, []) if now - t < max(self.window_s, self.lock_s)]
            self._failures[username] = recent
            return len(recent) >= self.max_failures and now - recent[-1] < self.lock_s

    def failed(self, username: str) -> None:
        with self._lock:
            self._failures.setdefault(username, []).append(time.monotonic())

    def succeeded(self, username: str) -> None:
        with self._lock:
            self._failures.pop(username, None)
