"""Bearer tokens to users, with the replica's cache."""

from __future__ import annotations

import asyncio

import pytest

from serve.auth import Authenticator, bearer_token, require_admin
from serve.ratelimit import RateLimiter
from studio.errors import PermissionDenied, RateLimited, Unauthenticated
from studio.models import UserInfo

ANN = UserInfo(name="ann")


class Users:
    def __init__(self) -> None:
        self.tokens = {"tok-ann": ANN, "tok-root": UserInfo(name="root", is_admin=True)}
        self.lookups = 0

    async def __call__(self, token: str) -> UserInfo | None:
        self.lookups += 1
        return self.tokens.get(token)


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer abc", "abc"),
        ("bearer   abc ", "abc"),
        ("Basic abc", None),
        ("Bearer", None),
        ("Bearer ", None),
        ("", None),
        (None, None),
    ],
)
def test_bearer_token(header: str | None, token: str | None) -> None:
    assert bearer_token(header) == token


async def test_known_token_is_cached_for_ttl() -> None:
    users, clock = Users(), Clock()
    auth = Authenticator(users, ttl=10, clock=clock)
    assert await auth.user("tok-ann") == ANN
    assert await auth.user("tok-ann") == ANN
    assert users.lookups == 1
    clock.now = 11
    assert await auth.user("tok-ann") == ANN
    assert users.lookups == 2


async def test_a_token_in_use_is_looked_up_again_before_it_expires() -> None:
    users, clock = Users(), Clock()
    auth = Authenticator(users, ttl=10, refresh_ahead=0.2, clock=clock)
    assert await auth.user("tok-ann") == ANN
    clock.now = 7  # not yet in the last 20 % of the ttl
    assert await auth.user("tok-ann") == ANN
    assert users.lookups == 1
    clock.now = 9
    # Answered from the cache at once; the lookup runs behind it.
    assert await auth.user("tok-ann") == ANN
    assert await auth.user("tok-ann") == ANN
    await asyncio.sleep(0.01)
    assert users.lookups == 2
    clock.now = 18  # 9 s after the refresh: still cached, nobody waited
    assert await auth.user("tok-ann") == ANN
    assert users.lookups == 2
    # A token revoked meanwhile stops working once the refresh brings that news.
    del users.tokens["tok-ann"]
    assert await auth.user("tok-ann") == ANN
    await asyncio.sleep(0.01)
    with pytest.raises(Unauthenticated):
        await auth.user("tok-ann")


async def test_unknown_and_missing_tokens_are_unauthenticated() -> None:
    users, clock = Users(), Clock()
    auth = Authenticator(users, negative_ttl=2, clock=clock)
    with pytest.raises(Unauthenticated, match="missing bearer token"):
        await auth.user(None)
    for _ in range(3):
        with pytest.raises(Unauthenticated, match="matches no user"):
            await auth.user("nope")
    assert users.lookups == 1
    users.tokens["nope"] = ANN
    clock.now = 3
    assert await auth.user("nope") == ANN


async def test_forget_user_takes_effect_at_once() -> None:
    users = Users()
    auth = Authenticator(users)
    await auth.user("tok-ann")
    del users.tokens["tok-ann"]
    auth.forget_user("ann")
    with pytest.raises(Unauthenticated):
        await auth.user("tok-ann")


async def test_concurrent_lookups_of_one_token_ask_once() -> None:
    gate = asyncio.Event()
    users = Users()

    async def slow(token: str) -> UserInfo | None:
        await gate.wait()
        return await users(token)

    auth = Authenticator(slow)
    waiting = [asyncio.create_task(auth.user("tok-ann")) for _ in range(50)]
    await asyncio.sleep(0)
    waiting[0].cancel()  # one caller leaving does not cancel the shared lookup
    gate.set()
    results = await asyncio.gather(*waiting, return_exceptions=True)
    assert isinstance(results[0], asyncio.CancelledError)
    assert results[1:] == [ANN] * 49
    assert users.lookups == 1


async def test_cache_is_bounded() -> None:
    users = Users()
    auth = Authenticator(users, max_entries=1)
    await auth.user("tok-ann")
    await auth.user("tok-root")
    await auth.user("tok-ann")
    assert users.lookups == 3


def test_require_admin() -> None:
    root = UserInfo(name="root", is_admin=True)
    assert require_admin(root) is root
    with pytest.raises(PermissionDenied, match="not an admin"):
        require_admin(ANN)


async def test_unknown_tokens_are_remembered_apart_and_never_push_out_a_user() -> None:
    users = Users()
    auth = Authenticator(users, max_entries=1, max_unknown=3)
    await auth.user("tok-ann")
    for n in range(10):
        with pytest.raises(Unauthenticated):
            await auth.user(f"random-{n}")
    assert auth.unknown_tokens == 3
    lookups = users.lookups
    assert await auth.user("tok-ann") == ANN
    assert users.lookups == lookups  # still cached: the flood did not evict it


async def test_an_address_presenting_unknown_tokens_is_held_to_its_failures() -> None:
    users, clock = Users(), Clock()
    failures = RateLimiter(60, 3, clock=clock)
    auth = Authenticator(users, failures=failures, clock=clock)
    for n in range(3):
        with pytest.raises(Unauthenticated):
            await auth.user(f"random-{n}", "10.0.0.1")
    for n in range(3, 10):
        with pytest.raises(RateLimited, match=r"too many unknown tokens from 10\.0\.0\.1"):
            await auth.user(f"random-{n}", "10.0.0.1")
    assert users.lookups == 3
    # Another address is not held back; a real token takes nothing from its budget.
    for _ in range(5):
        auth.forget_user("ann")
        assert await auth.user("tok-ann", "10.0.0.2") == ANN
    with pytest.raises(Unauthenticated):
        await auth.user("random-x", "10.0.0.2")
    clock.now = 1.0  # one a second comes back
    with pytest.raises(Unauthenticated):
        await auth.user("random-10", "10.0.0.1")
