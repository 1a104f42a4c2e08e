"""Reconnect delays: capped exponential backoff with full jitter.

Full jitter (delay drawn uniformly from [0, min(cap, base * 2**attempt)]) spreads a
fleet that lost the hub at the same moment over the whole window instead of letting
it return in synchronized waves.
"""

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class BackoffPolicy:
    initial_s: float = 0.5
    cap_s: float = 30.0

    def ceiling(self, attempt: int) -> float:
        """Upper bound of the delay before retry number `attempt` (0-based)."""
        return min(self.cap_s, self.initial_s * (2 ** min(attempt, 60)))

    def delay(self, attempt: int, rng: random.Random, floor_s: float = 0.0) -> float:
        """Delay before retry `attempt`; never below `floor_s` (a hub-requested backoff)."""
        return max(floor_s, rng.uniform(0.0, self.ceiling(attempt)))
