"""Forwards the users, auth and templates routes to their services, so clients need one base
URL. The answer (already an envelope) is passed back as it is.

Only the routes of :data:`ROUTES` are forwarded, and only with a normalised path: a path
the gateway matched as ``/api/v1/users/…`` must not become another route of the service
once a ``..`` or an encoded separator is resolved further on (``/api/v1/users/..%2Fauth%2F
login%2F`` reached the users service's login without the gateway's login limit).
"""

from __future__ import annotations

import re
from typing import Literal

import httpx
from fastapi import Request, Response

from tidings.core.auth import PRINCIPAL_HEADER, Principal, seal
from tidings.core.discovery import INSTANCE_HEADER, Endpoints
from tidings.core.errors import DependencyUnavailable, NotFound

# Not Authorization: the caller travels as the sealed principal.
_FORWARDED = ("content-type", "accept", "accept-language")

Target = Literal["users", "auth", "templates"]
_SEGMENT = r"[^/]+"  # one path segment; what it must look like is the service's to say
# (method, path): the users service's and the templates service's routes, nothing else.
# Every service path ends in a slash; a request may leave it out.
ROUTES: dict[Target, tuple[tuple[str, str], ...]] = {
    "users": (
        ("POST", "/api/v1/users/"),
        ("POST", "/api/v1/users/lookup/"),
        ("GET", "/api/v1/users/{id}/"),
        ("PATCH", "/api/v1/users/{id}/"),
        ("POST", "/api/v1/users/{id}/devices/"),
        ("GET", "/api/v1/users/{id}/devices/"),
        ("GET", "/api/v1/users/{id}/devices/{id}/"),
        ("DELETE", "/api/v1/users/{id}/devices/{id}/"),
        ("POST", "/api/v1/users/{id}/devices/{id}/dead/"),
    ),
    "auth": (
        ("POST", "/api/v1/auth/login/"),
        ("POST", "/api/v1/auth/refresh/"),
    ),
    "templates": (
        ("POST", "/api/v1/templates/"),
        ("GET", "/api/v1/templates/"),
        ("GET", "/api/v1/templates/{id}/"),
        ("GET", "/api/v1/templates/{id}/versions/"),
        ("POST", "/api/v1/templates/{id}/render/"),
        ("POST", "/api/v1/templates/categories/"),
        ("GET", "/api/v1/templates/categories/"),
        ("GET", "/api/v1/templates/categories/{id}/"),
        ("PATCH", "/api/v1/templates/categories/{id}/"),
        ("DELETE", "/api/v1/templates/categories/{id}/"),
    ),
}
_COMPILED = {
    target: [
        (method, re.compile("^" + path.rstrip("/").replace("{id}", _SEGMENT) + "/?$"))
        for method, path in routes
    ]
    for target, routes in ROUTES.items()
}
# In the raw path: an encoded '/', '\', '.' or '%' (double encoding) makes a separator or a
# dot-segment appear only after another decoding; no route of the table needs one.
_ENCODED = re.compile(rb"%(2f|5c|2e|25)", re.IGNORECASE)


def routed_path(request: Request, target: Target) -> str:
    """The path to forward, ending in a slash; NotFound (as for any unknown route) unless it
    is one of ``target``'s routes, without dot-segments, backslashes or encoded separators."""
    path: str = request.url.path
    raw: bytes = request.scope.get("raw_path") or path.encode()
    segments = path.split("/")
    clean = (
        not _ENCODED.search(raw)
        and "\\" not in path
        and "." not in segments
        and ".." not in segments
        and "//" not in path
    )
    if clean and any(
        method == request.method and pattern.match(path) for method, pattern in _COMPILED[target]
    ):
        return path if path.endswith("/") else path + "/"
    raise NotFound(f"no route {request.method} {path}")


class Proxy:
    """Forwards a request to its target's service (auth is the users service's), with the
    caller as a principal sealed by the gateway's secret key."""

    def __init__(
        self,
        secret_key: str,
        users: tuple[httpx.AsyncClient, Endpoints],
        templates: tuple[httpx.AsyncClient, Endpoints],
    ) -> None:
        self._secret_key = secret_key
        self._targets: dict[Target, tuple[httpx.AsyncClient, Endpoints]] = {
            "users": users,
            "auth": users,
            "templates": templates,
        }

    async def forward(
        self, request: Request, caller: Principal | None, target: Target
    ) -> httpx.Response:
        """Send the request on; the services' paths all end in a slash, so add one if
        missing (a redirect from the service would point at the service, not at the
        gateway)."""
        path = routed_path(request, target)
        client, endpoints = self._targets[target]
        headers = {k: v for k, v in request.headers.items() if k.lower() in _FORWARDED}
        if caller is not None:
            # The service trusts this, signed by us, instead of checking the client's key.
            headers[PRINCIPAL_HEADER] = seal(self._secret_key, caller)
        try:
            return await client.request(
                request.method,
                await endpoints.pick() + path,
                params=request.query_params,
                content=await request.body(),
                headers=headers,
            )
        except httpx.HTTPError as exc:
            raise DependencyUnavailable(
                f"{endpoints.service} service unreachable: {exc!r}"
            ) from exc


def passed_back(answer: httpx.Response) -> Response:
    instance = answer.headers.get(INSTANCE_HEADER)
    return Response(
        answer.content,
        status_code=answer.status_code,
        media_type=answer.headers.get("content-type"),
        headers={INSTANCE_HEADER: instance} if instance else None,
    )
