"""Who is calling: bearer tokens to users, with a short per-replica cache.

The manager owns users and tokens (only hashes are stored); a replica asks it
once per token and remembers the answer for ``ttl`` seconds, so the data
plane does not pay a manager round trip per request. Unknown tokens are
remembered too, apart and bounded, so a client hammering with a bad token does
not hammer the manager; one hammering with ever new random tokens is held to
``auth_failures_per_minute`` lookups per address (:class:`Authenticator`).
Deleting a user takes effect at once in the replica that handled the delete
and within ``ttl`` seconds in the others.

A token in use is looked up again in the background during the last
``refresh_ahead`` of its ``ttl``: a busy client never waits for the manager,
and a cached answer is still never older than ``ttl``.

The cache is keyed by the token's SHA-256, never by the token itself.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from serve._flight import SingleFlight
from serve.ratelimit import RateLimiter
from studio.errors import PermissionDenied, RateLimited, Unauthenticated
from studio.models import UserInfo

__all__ = ["Authenticator", "bearer_token", "require_admin"]

logger = logging.getLogger(__name__)

_SCHEME = "bearer"


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != _SCHEME:
        return None
    return token.strip() or None


def require_admin(user: UserInfo) -> UserInfo:
    """``user`` if an admin; :class:`PermissionDenied` otherwise."""
    if not user.is_admin:
        raise PermissionDenied(f"user {user.name!r} is not an admin; this needs the admin token")
    return user


@dataclass
class _Entry:
    user: UserInfo
    expires: float


class Authenticator:
    """Resolves tokens through ``lookup`` (the manager's ``authenticate``), cached.

    Known tokens and unknown ones are remembered apart, each cache bounded on
    its own: a flood of random tokens fills the unknown side (oldest dropped
    first) and never pushes a real user's entry out. With ``failures``, a
    client address may present only so many tokens the manager does not know
    (each one a manager call) before its unknown tokens are refused with 429
    unasked: a lookup takes one of the address's tokens, and a token that
    turns out to be a user's gives it back.
    """

    def __init__(
        self,
        lookup: Callable[[str], Awaitable[UserInfo | None]],
        *,
        ttl: float = 10.0,
        negative_ttl: float = 30.0,
        refresh_ahead: float = 0.2,
        max_entries: int = 10_000,
        max_unknown: int = 4096,
        failures: RateLimiter | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lookup: SingleFlight[str, UserInfo | None] = SingleFlight(lookup)
        self._ttl = ttl
        self._refresh_window = ttl * refresh_ahead
        # Background lookups by cache key (the task is kept so it is not collected).
        self._refreshing: dict[str, asyncio.Task[UserInfo | None]] = {}
        self._negative_ttl = negative_ttl
        self._max_entries = max_entries
        self._max_unknown = max_unknown
        self._failures = failures
        self._clock = clock
        self._cache: OrderedDict[str, _Entry] = OrderedDict()
        # Unknown tokens by cache key: when to ask about each again.
        self._unknown: OrderedDict[str, float] = OrderedDict()

    async def user(self, token: str | None, address: str | None = None) -> UserInfo:
        """The user ``token`` belongs to; :class:`Unauthenticated` when none.

        ``address`` is the client's (serve.limits): its unknown tokens are
        counted against ``failures``, and past them :class:`RateLimited`.
        """
        if not token:
            raise Unauthenticated(
                "missing bearer token: send 'Authorization: Bearer <token>' "
                "(or ?token= on a WebSocket)"
            )
        key = hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()
        now = self._clock()
        retry_at = self._unknown.get(key)
        if retry_at is not None and retry_at > now:
            raise Unauthenticated("the bearer token matches no user")
        entry = self._cache.get(key)
        if entry is None or entry.expires <= now:
            found = await self._fetch(key, token, address)
            if found is None:
                raise Unauthenticated("the bearer token matches no user")
            return found
        if entry.expires - now <= self._refresh_window:
            self._refresh(key, token)
        return entry.user

    @property
    def unknown_tokens(self) -> int:
        """How many unknown tokens are remembered (at most ``max_unknown``)."""
        return len(self._unknown)

    async def _fetch(self, key: str, token: str, address: str | None = None) -> UserInfo | None:
        failures = self._failures if address is not None else None
        if failures is not None and address is not None:
            wait = failures.check(address)
            if wait > 0:
                raise RateLimited(
                    f"too many unknown tokens from {address}: the limit is "
                    f"{failures.per_minute} a minute per client address "
                    f"(bursts of {failures.burst}); retry in {wait:.1f} s",
                    retry_after=wait,
                )
        asked = self._clock()  # the answer is as old as the question
        found: UserInfo | None = None
        try:
            found = await self._lookup.get(token)
        finally:
            if failures is not None and address is not None and found is not None:
                failures.refund(address)
        if found is None:
            self._cache.pop(key, None)
            self._unknown[key] = asked + self._negative_ttl
            self._unknown.move_to_end(key)
            while len(self._unknown) > self._max_unknown:
                self._unknown.popitem(last=False)
            return None
        self._unknown.pop(key, None)
        self._cache[key] = _Entry(found, asked + self._ttl)
        self._cache.move_to_end(key)
        while len(self._cache) > self._max_entries:
            self._cache.popitem(last=False)
        return found

    def _refresh(self, key: str, token: str) -> None:
        if key in self._refreshing:
            return
        task = asyncio.ensure_future(self._fetch(key, token))
        self._refreshing[key] = task
        task.add_done_callback(lambda t: self._refreshed(key, t))

    def _refreshed(self, key: str, task: asyncio.Task[UserInfo | None]) -> None:
        self._refreshing.pop(key, None)
        if not task.cancelled() and task.exception() is not None:
            # The entry stays until it expires; the next request then asks (and fails) itself.
            logger.warning("background token lookup failed: %s", task.exception())

    def forget_user(self, name: str) -> None:
        """Drop every cached token of user ``name`` (it was deleted)."""
        for key in [k for k, e in self._cache.items() if e.user.name == name]:
            del self._cache[key]
