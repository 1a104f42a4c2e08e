"""Admission of new agent streams: a token bucket the hub answers Backoff from.

After a hub restart the whole fleet reconnects at once. Registrations beyond the rate
are not refused outright: each is told how long to wait, spread so the excess arrives
at the sustainable rate rather than in another wave.
"""

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Admission:
    admitted: bool
    retry_after_s: float = 0.0


@dataclass
class TokenBucket:
    """`rate_per_s` tokens per second, holding at most `burst`. Pure apart from its state."""

    rate_per_s: float
    burst: float
    tokens: float
    updated: float

    @classmethod
    def full(cls, rate_per_s: float, burst: float, now: float) -> "TokenBucket":
        return cls(rate_per_s, burst, burst, now)

    def level(self, now: float) -> float:
        """The tokens the bucket holds at `now` (it refills as time passes)."""
        elapsed = max(0.0, now - self.updated)
        return min(self.burst, self.tokens + elapsed * self.rate_per_s)

    def take(self, now: float, rng: random.Random) -> Admission:
        self.tokens = self.level(now)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return Admission(True)
        deficit = 1.0 - self.tokens
        # The callers already turned away since the bucket ran dry will come back
        # within burst / rate; spread this one uniformly across that window.
        window = deficit / self.rate_per_s + self.burst / self.rate_per_s
        return Admission(False, rng.uniform(deficit / self.rate_per_s, window))
