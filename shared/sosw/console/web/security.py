"""The console's safety, enforced on the server for every request (hiding a button is not a refusal).

- **Host**: only the names the console was told it is reached by (``127.0.0.1``, ``localhost``, ``::1``
  and the ``--host`` given), so a web page whose DNS name is rebound to 127.0.0.1 is refused (Starlette's
  ``TrustedHostMiddleware``, outermost).
- **Token**: the URL the console prints carries a random token, as Jupyter's does; the first request
  with it gets a cookie (``HttpOnly``, ``SameSite=Strict``) and a redirect to the same URL without it,
  so the token leaves the address bar and the history at once. Every other request needs the cookie.
- **CSRF**: a state-changing request must be a POST from the console's own pages: ``Sec-Fetch-Site:
  same-origin`` when the browser sends it (as Sidekiq 8.1 checks), else an ``Origin`` equal to the
  console's own; a request with neither is refused. The ``SameSite=Strict`` cookie is a second lock.
- **Read-only**: ``--read-only`` refuses every POST.
- **Headers**: ``Referrer-Policy: no-referrer`` and a Content-Security-Policy that allows the console's
  own scripts and styles only, and no framing (``frame-ancestors 'none'``), on every answer.
"""

from __future__ import annotations

import hmac
import html
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette.datastructures import URL
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

__all__ = ["COOKIE", "CSP", "LOOPBACK_HOSTS", "Guard", "SecurityMiddleware"]

COOKIE = "sosw_console"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
_HEADERS = {
    "Content-Security-Policy": CSP,
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
_SAFE_METHODS = ("GET", "HEAD")

#: Requests as the console answered them, the query string left out (it may hold the token).
ACCESS_LOG = logging.getLogger("sosw.console.access")


@dataclass(frozen=True)
class Guard:
    """What the server checks: the token, whether actions are refused, and the host names it answers to."""

    token: str
    read_only: bool = False
    allowed_hosts: tuple[str, ...] = LOOPBACK_HOSTS


def _refusal(status: int, title: str, text: str) -> HTMLResponse:
    body = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>sosw console: '
        f"{html.escape(title)}</title></head><body><main><h1>{html.escape(title)}</h1>"
        f"<p>{html.escape(text)}</p></main></body></html>"
    )
    return HTMLResponse(body, status_code=status)


class SecurityMiddleware(BaseHTTPMiddleware):
    def __init__(self, app: object, guard: Guard) -> None:
        super().__init__(app)  # type: ignore[arg-type]
        self.guard = guard

    async def dispatch(self, request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        response = await self._checked(request, call_next)
        for name, value in _HEADERS.items():
            response.headers.setdefault(name, value)
        ACCESS_LOG.info("%s %s %s", request.method, request.url.path, response.status_code)
        return response

    async def _checked(self, request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        offered = request.query_params.get("token")
        if offered is not None:
            if not hmac.compare_digest(offered.encode(), self.guard.token.encode()):
                return _refusal(401, "Wrong token", "This link's token is not this console's. Use the URL it printed.")
            clean = URL(str(request.url)).remove_query_params("token")
            # Always a path of this console ("//host/..." would be another site's address)
            target = "/" + clean.path.lstrip("/") + (f"?{clean.query}" if clean.query else "")
            response = RedirectResponse(target, status_code=303)
            response.set_cookie(COOKIE, self.guard.token, httponly=True, samesite="strict", path="/")
            return response
        cookie = request.cookies.get(COOKIE, "")
        if not hmac.compare_digest(cookie.encode(), self.guard.token.encode()):
            return _refusal(
                401, "Sign-in needed", "Open the URL that `sosw console` (or `sosw local`) printed: it carries a token."
            )
        if request.method not in _SAFE_METHODS:
            refused = self._cross_site(request)
            if refused:
                return _refusal(403, "Refused", refused)
            if self.guard.read_only:
                return _refusal(403, "Read-only", "This console was started with --read-only: it changes nothing.")
        return await call_next(request)

    @staticmethod
    def _cross_site(request: Request) -> str | None:
        """Why a state-changing request is refused as cross-site, or None when it comes from our own pages."""
        site = request.headers.get("sec-fetch-site")
        if site is not None:
            return None if site == "same-origin" else f"a state-changing request from another site ({site})"
        origin = request.headers.get("origin")
        if origin is None:
            return "a state-changing request with neither Sec-Fetch-Site nor Origin"
        own = f"{request.url.scheme}://{request.headers.get('host', '')}"
        return None if origin == own else f"a state-changing request from another origin ({origin})"
