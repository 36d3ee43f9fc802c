"""Rate limits for what clients send (pure: the caller passes the time)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass
class TokenBucket:
    """At most `rate` requests a second on average, with bursts of up to `burst`."""

    rate: float
    burst: float
    tokens: float = -1.0
    updated: float = 0.0

    def allow(self, now: float) -> bool:
        if self.tokens < 0:
            self.tokens, self.updated = self.burst, now
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


@dataclass
class AttemptCounter:
    """At most `limit` attempts per key (an address) in any `window` seconds."""

    limit: int
    window: float = 60.0
    _attempts: dict[str, deque[float]] = field(default_factory=dict)

    def allow(self, key: str, now: float) -> bool:
        attempts = self._attempts.setdefault(key, deque())
        while attempts and attempts[0] <= now - self.window:
            attempts.popleft()
        if len(attempts) >= self.limit:
            return False
        attempts.append(now)
        if len(self._attempts) > 10_000:  # forget quiet addresses; memory stays bounded
            for quiet in [k for k, v in self._attempts.items() if not v]:
                del self._attempts[quiet]
        return True
