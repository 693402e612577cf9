"""Which arm a unit falls in: a pure function of the experiment's salt and the unit id.

A unit (a customer, a session, an account: whatever the request's ``unit_id`` or the
experiment's ``--unit-field`` names) is hashed with the experiment's random salt into a point
``u`` in [0, 1); it is in the treatment when ``u < split``. Every worker and replica computes the
same answer without talking to the others, the same unit always gets the same arm for the life
of the experiment, and a new experiment (a new salt) shuffles units afresh.

Because the treatment is the interval [0, split), raising the split only moves units from
control to treatment, never back: a ramp from 10% to 50% keeps every unit that was treated
treated. Lowering the split would move treated units back to control, so it is refused (stop
the experiment and start another). Each split change starts a new phase, and the analysis
reads only the current one, so arms that changed size mid-way never mix in one estimate.

A request without a unit id is assigned at random, independently each time: fine for models
whose answer a user does not see twice, wrong when the same person should keep one experience.
"""

from __future__ import annotations

import hashlib
import random
import secrets
from collections.abc import Callable
from functools import lru_cache

CONTROL, TREATMENT = "control", "treatment"
ARMS = (CONTROL, TREATMENT)
_SCALE = float(1 << 64)


def new_salt() -> str:
    """A fresh random salt for one experiment."""
    return secrets.token_hex(8)


def bucket(salt: str, unit_id: str) -> float:
    """The unit's point in [0, 1): the first 64 bits of blake2b keyed with the salt, scaled."""
    digest = hashlib.blake2b(unit_id.encode(), digest_size=8, key=salt.encode()).digest()
    return int.from_bytes(digest, "big") / _SCALE


def assign(
    salt: str,
    unit_id: str | None,
    split: float,
    draw: Callable[[], float] = random.random,
) -> str:
    """``"treatment"`` for a share ``split`` of units, else ``"control"``; sticky per unit.

    Without a unit id the arm is drawn at random (``draw``) for this request alone.
    """
    u = draw() if unit_id is None else bucket(salt, unit_id)
    return TREATMENT if u < split else CONTROL


class Assigner:
    """:func:`assign` for one salt, for the request path: the keyed hash is set up once and
    the points of recently seen units are remembered (the same answers, about 0.2 us a
    request instead of 2)."""

    def __init__(self, salt: str, split: float, cached_units: int = 65_536) -> None:
        self.split = split
        keyed = hashlib.blake2b(digest_size=8, key=salt.encode())

        def point(unit_id: str) -> float:
            h = keyed.copy()
            h.update(unit_id.encode())
            return int.from_bytes(h.digest(), "big") / _SCALE

        self.point = lru_cache(maxsize=cached_units)(point)

    def __call__(self, unit_id: str | None, draw: Callable[[], float] = random.random) -> str:
        """The arm of ``unit_id`` (a random one without it)."""
        u = draw() if unit_id is None else self.point(unit_id)
        return TREATMENT if u < self.split else CONTROL
