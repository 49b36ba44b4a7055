"""The Component Studio API: a FastAPI app served by a Ray Serve deployment.

:func:`build_app` gives the Serve application (``studio up`` runs it);
``serve.app:app_builder`` is the import path for ``serve run`` and Serve
config files, with the settings as arguments. The routes live in
``serve.routes``; this module wires one :class:`Replica` (backend, auth cache,
rate limiter, WebSocket hub; ``serve.replica``) into each replica's app.

Every open WebSocket holds one of a replica's ongoing requests, so the
deployment allows many (``max_ongoing_requests``): Serve's default of 5 would
make the 6th connection hang.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import ray
from fastapi import FastAPI
from ray import serve
from ray.serve import Application
from starlette.routing import Route

from actors.handles import start_manager
from serve.direct import DirectListener
from serve.errors import install_error_handlers
from serve.limits import RequestLimits
from serve.mcp_endpoint import MCP_PATH, McpEndpoint
from serve.picture_routes import pictures_router
from serve.renderer_proxy import renderer_router
from serve.replica import Replica, ServeOptions
from serve.routes import router
from studio import __version__
from studio.config import StudioSettings

__all__ = [
    "DEPLOYMENT_NAME",
    "MAX_ONGOING_REQUESTS",
    "StudioIngress",
    "app_builder",
    "build_app",
    "create_app",
    "stop_serve",
]

logger = logging.getLogger(__name__)

DEPLOYMENT_NAME = "ComponentStudioAPI"
# Each WebSocket client holds a request for as long as it is connected.
MAX_ONGOING_REQUESTS = 10_000
# A stopping replica checks for ongoing requests this often (Serve's default, 2 s,
# is the least a stop takes) and waits for them this long (default 20 s). Open
# WebSockets count as ongoing and stay open until their client leaves; cut, their
# clients reconnect (with ?since) to a replica that runs. `studio up` stops
# within 10 s (docs/operations.md).
GRACEFUL_SHUTDOWN_WAIT_LOOP_S = 0.2
GRACEFUL_SHUTDOWN_TIMEOUT_S = 4.0
# Settings a replica must not hold: the manager keeps the secrets.
_SECRET_SETTINGS = frozenset({"admin_token", "github_token"})


def _advertised_host(public_host: str) -> str:
    """The host clients reach this replica's node by: ``public_host`` names the head node."""
    if not ray.is_initialized():
        return public_host
    node_ip = str(ray.util.get_node_ip_address())  # type: ignore[no-untyped-call]
    head_ip = ray.get_runtime_context().gcs_address.rsplit(":", 1)[0]
    return public_host if node_ip == head_ip else node_ip


def create_app(replica: Replica) -> FastAPI:
    """The FastAPI app of one replica (docs at ``/docs``), with the MCP server at ``/mcp``."""
    mcp = McpEndpoint(replica)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings = replica.settings
        if settings.ws_direct_port:
            replica.direct = DirectListener(
                app,
                host=settings.host,
                first_port=settings.ws_direct_port,
                advertised_host=_advertised_host(settings.public_host),
                api_hint=f"port {settings.ws_port}",
                ws_max_size=settings.ws_max_message_bytes,
            )
            await replica.direct.start()
        # The MCP SDK's task group: a route's ASGI app gets no lifespan of its own.
        async with mcp.running():
            yield
        if replica.direct is not None:
            await replica.direct.stop()
        await replica.hub.close()
        await replica.close()

    app = FastAPI(
        title="Component Studio",
        version=__version__,
        description="Live, isolated workspaces for editing UI components on a branch.",
        lifespan=lifespan,
    )
    app.state.replica = replica
    # Before routing, the body and authentication: a flood or a huge body costs no
    # manager call (FastAPI reads a route's body before its dependencies authenticate).
    app.add_middleware(
        RequestLimits,
        limiter=replica.address_limiter,
        max_body=replica.settings.max_request_bytes,
    )
    install_error_handlers(app)
    app.include_router(router)
    app.include_router(pictures_router)
    app.include_router(renderer_router)
    # POST only: a stateless server has no stream to GET and no session to DELETE (405).
    app.router.routes.append(Route(MCP_PATH, endpoint=mcp, methods=["POST"]))
    return app


@serve.deployment(
    name=DEPLOYMENT_NAME,
    num_replicas=1,
    max_ongoing_requests=MAX_ONGOING_REQUESTS,
    graceful_shutdown_wait_loop_s=GRACEFUL_SHUTDOWN_WAIT_LOOP_S,
    graceful_shutdown_timeout_s=GRACEFUL_SHUTDOWN_TIMEOUT_S,
    ray_actor_options={"num_cpus": 0},
)
@serve.ingress()
class StudioIngress:
    """The Serve deployment; its ASGI app is built on the replica from the settings."""

    def __init__(self, settings: dict[str, Any], options: dict[str, Any] | None = None) -> None:
        self._replica = Replica(
            StudioSettings.model_validate(settings), ServeOptions.model_validate(options or {})
        )

    def __serve_build_asgi_app__(self) -> FastAPI:
        return create_app(self._replica)


def build_app(settings: StudioSettings, options: ServeOptions | None = None) -> Application:
    """The Serve application for ``settings`` (what ``serve.run`` takes)."""
    options = options or ServeOptions()
    public = settings.model_dump(mode="json", exclude=set(_SECRET_SETTINGS))
    deployment = StudioIngress.options(num_replicas=options.num_replicas)  # type: ignore[attr-defined]
    return deployment.bind(public, options.model_dump(mode="json"))  # type: ignore[no-any-return]


def app_builder(args: dict[str, Any]) -> Application:
    """``serve run serve.app:app_builder key=value ...`` / a Serve config's ``args``.

    Keys naming a :class:`ServeOptions` field set it; the others are
    StudioSettings fields (``COMPONENT_STUDIO_*`` variables fill what is not
    given); anything else is an error. Starts the manager actor unless one is
    running already (it runs on the cluster the application is deployed to).
    """
    unknown = sorted(set(args) - set(ServeOptions.model_fields) - set(StudioSettings.model_fields))
    if unknown:
        raise ValueError(
            f"unknown arguments {unknown}: use StudioSettings fields "
            f"or serve options {sorted(ServeOptions.model_fields)}"
        )
    options = {k: v for k, v in args.items() if k in ServeOptions.model_fields}
    settings = StudioSettings(**{k: v for k, v in args.items() if k not in options})
    start_manager(settings)
    return build_app(settings, ServeOptions.model_validate(options))


def stop_serve(timeout: float = 30.0) -> None:
    """Shut Serve down on the connected cluster and return once it is gone.

    ``serve.shutdown()`` waits inside a call to the controller that ends only
    when the controller kills itself: the call then fails and, the
    controller's calls being retried, Ray reports the failure to the driver as
    an error line (``Task ServeController.graceful_shutdown failed ... killed
    by ray.kill``) on every clean stop. Here the controller is only told to
    shut down (``graceful_shutdown(wait=False)`` answers at once) and the wait
    is for its name, which is released once its applications and proxies are
    down and it has exited. Nothing when Serve is not running; TimeoutError
    past ``timeout`` seconds.
    """
    # Serve's own names for its controller: there is no public handle to it.
    from ray.serve._private.constants import SERVE_CONTROLLER_NAME, SERVE_NAMESPACE

    try:
        controller: Any = ray.get_actor(SERVE_CONTROLLER_NAME, namespace=SERVE_NAMESPACE)
    except ValueError:
        return
    ray.get(controller.graceful_shutdown.remote(wait=False), timeout=timeout)
    deadline = time.monotonic() + timeout
    while True:
        try:
            ray.get_actor(SERVE_CONTROLLER_NAME, namespace=SERVE_NAMESPACE)
        except ValueError:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"Serve's controller was still running after {timeout:.0f} s")
        time.sleep(0.1)
