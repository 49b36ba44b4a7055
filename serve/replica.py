"""What one API replica holds: its options, backend, auth cache, rate limiter and hub."""

from __future__ import annotations

import time

import aiohttp
from pydantic import BaseModel, ConfigDict, Field

from serve.auth import Authenticator
from serve.backend import ActorClient
from serve.direct import DirectListener
from serve.hub import EventHub
from serve.ratelimit import RateLimiter
from serve.websocket import SessionOptions
from studio.config import StudioSettings
from studio.errors import ServiceUnavailable
from studio.viewer import viewer_token

__all__ = ["RENDERER_TARGET_TTL", "Replica", "ServeOptions"]

# Seconds a replica trusts where a sandbox's Vite was (serve.renderer_proxy).
RENDERER_TARGET_TTL = 10.0


class ServeOptions(BaseModel):
    """Knobs of the API replicas (not sandbox settings); tests shrink the intervals."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    num_replicas: int = Field(1, ge=1, description="Replicas of the API deployment.")
    ping_interval: float = Field(20.0, gt=0, description="Seconds between WebSocket pings.")
    pong_timeout: float = Field(
        60.0, gt=0, description="Seconds a client may take to answer a ping before it is dropped."
    )
    client_queue: int = Field(256, ge=1, description="Events queued per client before dropping it.")
    poll_timeout: float = Field(15.0, gt=0, description="Seconds of one event long-poll.")
    manager_timeout: float = Field(
        10.0, gt=0, description="Seconds a quick manager call may take before a 503."
    )
    sandbox_timeout: float = Field(
        120.0, gt=0, description="Seconds a sandbox call may take before a 503."
    )
    auth_ttl: float = Field(10.0, ge=0, description="Seconds a replica trusts a token lookup.")
    keepalive_interval: float = Field(
        60.0, gt=0, description="Seconds between two touches of a sandbox someone watches."
    )
    ready_repositories: tuple[str, ...] = Field(
        (),
        description="Repositories (by name) that must be registered before /readyz answers "
        "200; `studio up` names its sample repository.",
    )


class Replica:
    """What one replica's routes share."""

    def __init__(self, settings: StudioSettings, options: ServeOptions) -> None:
        self.settings = settings
        self.options = options
        self.backend = ActorClient(
            manager_timeout=options.manager_timeout, sandbox_timeout=options.sandbox_timeout
        )
        self.limiter = RateLimiter(settings.rate_limit_per_minute, settings.rate_limit_burst)
        # Before authentication (serve.limits): every request of a client address, and
        # the unknown tokens it presents (each one a manager call).
        self.address_limiter = RateLimiter(
            settings.address_rate_limit_per_minute, settings.address_rate_limit_burst
        )
        self.auth = Authenticator(
            self.backend.authenticate,
            ttl=options.auth_ttl,
            failures=RateLimiter(settings.auth_failures_per_minute, settings.auth_failure_burst),
        )
        self.hub = EventHub(
            self.backend.events,
            queue_size=options.client_queue,
            poll_timeout=options.poll_timeout,
            is_permanent=ActorClient.is_permanent,
            keepalive=self.backend.touch,
            keepalive_interval=options.keepalive_interval,
        )
        self._service_secret: str | None = None
        # Where each sandbox's Vite is, and when that was asked (serve.renderer_proxy).
        self._renderer_targets: dict[str, tuple[str, float]] = {}
        self._session: aiohttp.ClientSession | None = None
        # Started with the app (serve.app's lifespan) when ws_direct_port is set.
        self.direct: DirectListener | None = None
        self.session = SessionOptions(
            ping_interval=options.ping_interval,
            pong_timeout=options.pong_timeout,
            max_message_bytes=settings.ws_max_message_bytes,
            messages_per_second=settings.ws_messages_per_second,
            message_burst=settings.ws_message_burst,
        )

    async def service_secret(self) -> str:
        """The secret viewer tokens and renderer tickets derive from (the manager's)."""
        if self._service_secret is None:
            # Fixed for the manager's state dir: asked once per replica.
            self._service_secret = str(await self.backend.manager("viewer_secret"))
        return self._service_secret

    async def renderer_target(self, sandbox_id: str, *, fresh: bool = False) -> tuple[str, str]:
        """``(Vite's base URL, its proxy secret)`` for the renderer proxy.

        The base URL (``http://<node>:<port>/r/<id>/``) is the sandbox actor's
        answer, cached ``RENDERER_TARGET_TTL`` seconds (``fresh`` asks again);
        ServiceUnavailable while the sandbox has no running Vite.
        """
        known = self._renderer_targets.get(sandbox_id)
        now = time.monotonic()
        if known is None or fresh or now - known[1] > RENDERER_TARGET_TTL:
            state = await self.backend.sandbox(sandbox_id, "ping")
            url = state.get("renderer")
            if not url:
                self._renderer_targets.pop(sandbox_id, None)
                raise ServiceUnavailable(
                    f"sandbox {sandbox_id} has no running renderer "
                    f"(it is {state.get('state', 'unknown')}); retry shortly",
                    retry_after=2,
                )
            known = (str(url), now)
            self._renderer_targets[sandbox_id] = known
        return known[0], viewer_token(await self.service_secret(), sandbox_id)

    def forget_renderer_target(self, sandbox_id: str) -> None:
        """Ask the sandbox again next time (its Vite did not answer where it was)."""
        self._renderer_targets.pop(sandbox_id, None)

    def vite_session(self) -> aiohttp.ClientSession:
        """The replica's client to the sandboxes' Vites (pooled keep-alive connections).

        aiohttp's, not httpx's: a page load is 20 to 60 requests through this one
        event loop, and with aiohttp's C parser a proxied module costs the replica
        ~0.8 ms of CPU in all, against ~1.8 ms with httpx (docs/performance.md). No cookie jar
        (a cookie one user's Vite set must never go with another's request), no
        proxy from the environment, no decompression (bodies pass through as Vite
        sent them), no headers of its own (the browser's pass through), and no
        timeout on a body being streamed: Vite answers its first request of a
        module after transforming it.
        """
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=256, limit_per_host=64),
                cookie_jar=aiohttp.DummyCookieJar(),
                trust_env=False,
                auto_decompress=False,
                skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=5.0),
            )
        return self._session

    async def close(self) -> None:
        """Close what the replica opened (the app's lifespan ends)."""
        if self._session is not None:
            await self._session.close()
            self._session = None
