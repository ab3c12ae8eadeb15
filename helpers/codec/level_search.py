"""Choosing the level for a rate: ``compress --max-bytes N`` and ``--target-bpp X``.

Levels are continuous between the trained ones (``model.LevelGain``: gains interpolated log-linearly, stored in
the file in 1/256 steps), and a file's size grows with the level, close to exponentially: log(size) is nearly
linear in the level between two trained levels. The search below brackets the asked size between two levels
and narrows the bracket by interpolating log(size) linearly (regula falsi), with a bisection step whenever an
interpolation step shrinks the bracket by less than half, so it never takes more than about twice the steps of
bisection (11 on the 1/256 grid of 7 levels) and usually 4-7. Each step codes the latent at one level: the
analysis transform, most of the encoding time, runs once (the gain multiplies its output).
"""

from __future__ import annotations

import math
from collections.abc import Callable

from helpers.codec.errors import CodecError, plural

CLOSE_ENOUGH = 0.01  # stop when the two ends of the bracket differ by less than 1 % in size


def largest_within(size_at: Callable[[int], int], lo: int, hi: int, limit: float) -> tuple[int, int | None]:
    """For sizes non-decreasing in the integer ``u`` on ``lo..hi``: ``(u, u_above)`` where ``u`` is the largest
    with ``size_at(u) <= limit`` (up to ``CLOSE_ENOUGH``) and ``u_above`` the smallest tried above it (None when
    ``hi`` fits). CodecError when even ``lo`` is too large."""
    s_lo = size_at(lo)
    if s_lo > limit:
        raise CodecError(
            f"the smallest file ({plural(s_lo, 'byte')}) is above the {plural(int(limit), 'byte')} asked"
        )
    s_hi = size_at(hi)
    if s_hi <= limit:
        return hi, None
    bisect = False
    while hi - lo > 1 and s_hi > s_lo * (1 + CLOSE_ENOUGH):
        if bisect:
            u = (lo + hi) // 2
        else:
            t = (math.log(limit) - math.log(s_lo)) / (math.log(s_hi) - math.log(s_lo))
            u = min(max(lo + round(t * (hi - lo)), lo + 1), hi - 1)
        width = hi - lo
        s = size_at(u)
        if s <= limit:
            lo, s_lo = u, s
        else:
            hi, s_hi = u, s
        bisect = not bisect and hi - lo > width / 2
    return lo, hi


def nearest(size_at: Callable[[int], int], lo: int, hi: int, target: float) -> int:
    """The ``u`` in ``lo..hi`` whose size is nearest ``target`` in ratio (sizes non-decreasing in ``u``)."""
    try:
        below, above = largest_within(size_at, lo, hi, target)
    except CodecError:
        return lo  # even the smallest file is larger than the target: the nearest is the smallest
    if above is None:
        return below
    return min((below, above), key=lambda u: abs(math.log(size_at(u) / target)))
