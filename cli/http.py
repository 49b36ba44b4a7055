"""The CLI's HTTP side: one small client for the Component Studio API.

Every failure becomes a :class:`CliError` whose message a person can act on:
the API not running, a refused token, or the API's own
``{"error": {"code", "message"}}`` answer.
"""

from __future__ import annotations

from typing import Any

import httpx

__all__ = ["DEFAULT_URL", "ApiClient", "CliError"]

DEFAULT_URL = "http://127.0.0.1:8000"
API_PREFIX = "/api/v1"
# Create waits for Vite (a cold npm ci on a new node can take minutes).
CREATE_TIMEOUT = 600.0
REQUEST_TIMEOUT = 60.0


class CliError(Exception):
    """A failure the CLI reports as one line on stderr, with an exit code."""

    def __init__(self, message: str, exit_code: int = 1, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
        self.code = code


def _error_of(response: httpx.Response) -> tuple[str | None, str]:
    """(code, message) out of an error response, whatever shape it has."""
    try:
        body = response.json()
    except ValueError:
        text = response.text.strip()
        return None, text[:500] or response.reason_phrase
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            return error.get("code"), str(error.get("message", ""))
        detail = body.get("detail")
        if isinstance(detail, list):
            # FastAPI's own validation answer: name each field that was wrong.
            parts = []
            for item in detail:
                if isinstance(item, dict):
                    where = ".".join(str(p) for p in item.get("loc", []) if p != "body")
                    parts.append(f"{where}: {item.get('msg', '')}" if where else str(item))
            return "invalid_request", "; ".join(parts)
        if detail is not None:
            return None, str(detail)
    return None, str(body)[:500]


class ApiClient:
    """Blocking client of the API at ``url`` (scheme://host:port, no path) with a bearer token."""

    def __init__(
        self, url: str, token: str | None, *, transport: httpx.BaseTransport | None = None
    ):
        self.url = url.rstrip("/")
        self.token = token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(
            base_url=self.url, headers=headers, timeout=REQUEST_TIMEOUT, transport=transport
        )

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        timeout: float | None = None,
    ) -> Any:
        """Send ``method`` to ``/api/v1<path>`` (``/healthz`` as is); the decoded JSON body."""
        full = path if path == "/healthz" else API_PREFIX + path
        try:
            response = self._http.request(
                method,
                full,
                json=json,
                params=params,
                timeout=timeout if timeout is not None else REQUEST_TIMEOUT,
            )
        except httpx.ConnectError as exc:
            raise CliError(
                f"cannot reach the Component Studio API at {self.url}: is `studio up` running? "
                f"(set --url or STUDIO_URL to point elsewhere; {exc})",
                exit_code=2,
                code="unreachable",
            ) from exc
        except httpx.TimeoutException as exc:
            raise CliError(
                f"the Component Studio API at {self.url} did not answer {method} {full} in time",
                exit_code=2,
                code="timeout",
            ) from exc
        except httpx.HTTPError as exc:
            raise CliError(f"request to {self.url}{full} failed: {exc}", exit_code=2) from exc
        return self._decode(response)

    def _decode(self, response: httpx.Response) -> Any:
        if response.status_code == 401:
            _code, message = _error_of(response)
            raise CliError(
                f"the API at {self.url} refused the token (401: {message or 'unauthenticated'}); "
                "pass the token `studio up` printed with --token or STUDIO_TOKEN",
                exit_code=3,
                code="unauthenticated",
            )
        if response.status_code >= 400:
            code, message = _error_of(response)
            label = f"{response.status_code} {code}" if code else str(response.status_code)
            extra = ""
            retry = response.headers.get("Retry-After")
            if response.status_code == 429 and retry:
                extra = f" (retry after {retry} s)"
            raise CliError(f"{label}: {message}{extra}", exit_code=1, code=code)
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError as exc:
            raise CliError(
                f"the server at {self.url} answered {response.status_code} with something that "
                "is not JSON: is it really the Component Studio API?",
                exit_code=2,
            ) from exc
