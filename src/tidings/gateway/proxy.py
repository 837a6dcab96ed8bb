"""Forwards /api/v1/users/… and /api/v1/templates/… to their services, so clients need one
base URL. The answer (already an envelope) is passed back as it is."""

from __future__ import annotations

import httpx
from fastapi import Request, Response

from tidings.core.errors import DependencyUnavailable

_FORWARDED = ("content-type", "accept", "authorization", "accept-language")


async def forward(request: Request, client: httpx.AsyncClient, service: str) -> Response:
    headers = {k: v for k, v in request.headers.items() if k.lower() in _FORWARDED}
    try:
        answer = await client.request(
            request.method,
            request.url.path,
            params=request.query_params,
            content=await request.body(),
            headers=headers,
        )
    except httpx.HTTPError as exc:
        raise DependencyUnavailable(f"{service} service unreachable: {exc!r}") from exc
    return Response(
        answer.content,
        status_code=answer.status_code,
        media_type=answer.headers.get("content-type"),
    )
