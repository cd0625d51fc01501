"""What runs in front of every request: the Host and Origin checks, the bearer token and the
cap on body size.

Pure ASGI, so a refused request costs nothing further: no routing, no body parsing.

Without a token the server trusts whoever reaches it, which is safe only if "whoever" is this
machine: so the Host header must name the address the connection came in on (or a loopback name
at that port), which a page on another site that rebinds its DNS to 127.0.0.1 cannot send; and a
write (POST, PUT, PATCH, DELETE) that a browser marks as coming from another origin is refused,
so no web page can spend this machine's compute or fill its disk. Clients that send no Origin
(curl, Python) are not browsers and pass.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

TOKEN_COOKIE = "latentkit_token"
LOOPBACK = frozenset({"localhost", "127.0.0.1", "[::1]"})
WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


class BodyTooLarge(Exception):
    """Raised from `receive` once a body without Content-Length passes the cap."""


class Guard:
    """Pure-ASGI checks in front of everything: the bearer token and the body-size cap.

    The token may come as `Authorization: Bearer T` (or as the password of Basic credentials,
    as AUTOMATIC1111's clients send it), as `?token=T` (to open the page), or as the
    cookie the page then gets, so what a browser loads without headers (<img>, EventSource,
    scripts) carries it too.
    """

    def __init__(
        self,
        app: Any,
        token: str | None,
        max_body: int,
        allowed_hosts: Iterable[str] | None = None,
    ) -> None:
        self.app, self.token, self.max_body = app, token, max_body
        self.allowed_hosts = {h.lower() for h in allowed_hosts} if allowed_hosts else None

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host", "")
        if not self.host_allowed(scope, host):
            return await self.reply(send, 400, wrong_host_message(scope, host), "Host")
        if self.token is not None and not self.authorised(scope, headers):
            return await self.reply(send, 401, "missing or wrong bearer token", "Authorization")
        origin = headers.get("origin")
        if scope["method"] in WRITES and origin is not None and not same_origin(origin, host):
            return await self.reply(send, 403, cross_origin_message(scope, origin), "Origin")
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

    def host_allowed(self, scope: dict, host: str) -> bool:
        """Loopback names or the address the connection reached, at its port; any name once
        a token guards the server; the names given to create_app, at any port."""
        name, port = split_host(host, scope.get("scheme", "http"))
        if self.allowed_hosts is None:
            if self.token is not None:
                return True
        elif name in self.allowed_hosts or host.strip().lower() in self.allowed_hosts:
            return True
        server_name, server_port = server_address(scope)
        names = LOOPBACK | {server_name} if server_name else LOOPBACK
        return name in names and server_port in (port, None)

    def too_large(self, size: int) -> str:
        return f"request body is {size} bytes, over the server's upload cap of {self.max_body}"

    def authorised(self, scope: dict, headers: dict[str, str]) -> bool:
        from http.cookies import SimpleCookie
        from urllib.parse import parse_qs

        given = bearer_or_basic(headers.get("authorization", ""))
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


def split_host(host: str, scheme: str = "http") -> tuple[str, int]:
    """`name[:port]` (IPv6 in brackets) as (lowercase name, port): the scheme's default if none
    was given, -1 if it is not a number."""
    host = host.strip().lower()
    if host.endswith("]") or ":" not in host:
        name, port = host, ""
    else:
        name, _, port = host.rpartition(":")
    if not port:
        return name, DEFAULT_PORTS.get(scheme, -1)
    return name, int(port) if port.isdigit() else -1


def server_address(scope: dict) -> tuple[str, int | None]:
    """The (name as a Host header writes it, port) the connection came in on."""
    server = scope.get("server") or ("", None)
    name = str(server[0]).lower()
    return (f"[{name}]" if ":" in name else name), server[1]


def same_origin(origin: str, host: str) -> bool:
    """Whether a browser's Origin header names the host it sent the request to."""
    parts = urlsplit(origin.strip().lower())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False  # `null`: a sandboxed page or a file
    return split_host(parts.netloc, parts.scheme) == split_host(host, parts.scheme)


def cross_origin_message(scope: dict, origin: str) -> str:
    return (f"{scope['method']} from another origin ({origin}) refused: only this server's own "
            "page may write to it from a browser")  # fmt: skip


def wrong_host_message(scope: dict, host: str) -> str:
    port = server_address(scope)[1]
    return (f"Host {host!r} is not this server's address: open it as http://localhost:{port}/ "
            "(a page reaching this server under another name may be a DNS-rebinding attack; "
            "serve with --token to allow other names)")  # fmt: skip


def bearer_or_basic(header: str) -> str:
    """The token in `Authorization`: `Bearer T` (OpenAI's clients send the API key so), or the
    password of `Basic` credentials (AUTOMATIC1111's clients, e.g. webuiapi's username and
    password; any user name)."""
    import base64
    import binascii

    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() == "basic":
        try:
            return base64.b64decode(value.strip()).decode("utf-8").partition(":")[2]
        except (binascii.Error, UnicodeDecodeError):
            return ""
    return value.strip() if scheme.lower() == "bearer" else header.strip()
