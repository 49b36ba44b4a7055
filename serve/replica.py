"""What one API replica holds: its options, backend, auth cache, rate limiter and hub."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from serve.auth import Authenticator
from serve.backend import ActorClient
from serve.direct import DirectListener
from serve.hub import EventHub
from serve.ratelimit import RateLimiter
from serve.websocket import SessionOptions
from studio.config import StudioSettings
from studio.viewer import VIEWER_PREFIX, is_viewer_token

__all__ = ["Replica", "ServeOptions"]


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
        self._viewer_secret: str | None = None
        # Started with the app (serve.app's lifespan) when ws_direct_port is set.
        self.direct: DirectListener | None = None
        self.session = SessionOptions(
            ping_interval=options.ping_interval,
            pong_timeout=options.pong_timeout,
            max_message_bytes=settings.ws_max_message_bytes,
            messages_per_second=settings.ws_messages_per_second,
            message_burst=settings.ws_message_burst,
        )

    async def is_viewer(self, sandbox_id: str, token: str | None) -> bool:
        """Whether ``token`` is ``sandbox_id``'s viewer token (its studio page's)."""
        if not token or not token.startswith(VIEWER_PREFIX):
            return False
        if self._viewer_secret is None:
            # Fixed for the manager's state dir: asked once per replica.
            self._viewer_secret = str(await self.backend.manager("viewer_secret"))
        return is_viewer_token(self._viewer_secret, sandbox_id, token)
