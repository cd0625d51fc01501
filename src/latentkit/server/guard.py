"""What runs in front of every request: the bearer token and the cap on body size.

Pure ASGI, so a refused request costs nothing further: no routing, no body parsing.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable
from typing import Any

TOKEN_COOKIE = "latentkit_token"


class BodyTooLarge(Exception):
    """Raised from `receive` once a body without Content-Length passes the cap."""


class Guard:
    """Pure-ASGI checks in front of everything: the bearer token and the body-size cap.

    The token may come as `Authorization: Bearer T`, as `?token=T` (to open the page), or as the
    cookie the page then gets, so what a browser loads without headers (<img>, EventSource,
    scripts) carries it too.
    """

    def __init__(self, app: Any, token: str | None, max_body: int) -> None:
        self.app, self.token, self.max_body = app, token, max_body

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if self.token is not None and not self.authorised(scope, headers):
            return await self.reply(send, 401, "missing or wrong bearer token", "Authorization")
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > self.max_body:
            return await self.reply(send, 413, self.too_large(int(length)), "file")
        seen = 0

        async def limited() -> dict:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_body:
                raise BodyTooLarge
            return message

        try:
            await self.app(scope, limited, send)
        except BodyTooLarge:
            await self.reply(send, 413, self.too_large(seen), "file")

    def too_large(self, size: int) -> str:
        return f"request body is {size} bytes, over the server's upload cap of {self.max_body}"

    def authorised(self, scope: dict, headers: dict[str, str]) -> bool:
        from http.cookies import SimpleCookie
        from urllib.parse import parse_qs

        given = headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not given:
            given = parse_qs(scope.get("query_string", b"").decode()).get("token", [""])[0]
        if not given:
            jar = SimpleCookie(headers.get("cookie", ""))
            given = jar[TOKEN_COOKIE].value if TOKEN_COOKIE in jar else ""
        return hmac.compare_digest(given.encode(), self.token.encode())  # type: ignore[union-attr]

    @staticmethod
    async def reply(send: Callable, status: int, message: str, field: str | None) -> None:
        body = json.dumps({"error": message, "field": field, "status": status}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
