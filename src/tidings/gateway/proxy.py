"""Forwards /api/v1/users/… and /api/v1/templates/… to their services, so clients need one
base URL. The answer (already an envelope) is passed back as it is."""

from __future__ import annotations

import httpx
from fastapi import Request, Response

from tidings.core.auth import PRINCIPAL_HEADER, Principal, seal
from tidings.core.discovery import INSTANCE_HEADER, Endpoints
from tidings.core.errors import DependencyUnavailable

# Not Authorization: the caller travels as the sealed principal.
_FORWARDED = ("content-type", "accept", "accept-language")


async def forward(
    request: Request,
    client: httpx.AsyncClient,
    endpoints: Endpoints,
    caller: Principal | None,
) -> httpx.Response:
    """Send the request on; the services' paths all end in a slash, so add one if missing
    (a redirect from the service would point at the service, not at the gateway)."""
    headers = {k: v for k, v in request.headers.items() if k.lower() in _FORWARDED}
    if caller is not None:
        # The service trusts this, signed by us, instead of checking the client's key again.
        headers[PRINCIPAL_HEADER] = seal(request.app.state.access.secret_key, caller)
    path = request.url.path if request.url.path.endswith("/") else request.url.path + "/"
    service = endpoints.service
    try:
        answer = await client.request(
            request.method,
            await endpoints.pick() + path,
            params=request.query_params,
            content=await request.body(),
            headers=headers,
        )
    except httpx.HTTPError as exc:
        raise DependencyUnavailable(f"{service} service unreachable: {exc!r}") from exc
    return answer


def passed_back(answer: httpx.Response) -> Response:
    instance = answer.headers.get(INSTANCE_HEADER)
    return Response(
        answer.content,
        status_code=answer.status_code,
        media_type=answer.headers.get("content-type"),
        headers={INSTANCE_HEADER: instance} if instance else None,
    )
