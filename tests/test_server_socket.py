"""The web listener's accepted connections send small writes at once (TCP_NODELAY),
so a keep-alive API request does not wait for the client's delayed ACK."""

from __future__ import annotations

import asyncio
import socket

from lightsoc.config import parse_config
from lightsoc.server import bind
from tests.helpers import free_port


def test_connections_accepted_on_the_web_socket_have_tcp_nodelay() -> None:
    port = free_port()
    listener = bind(parse_config(f'web: {{listen: "127.0.0.1:{port}"}}\n', env={}))
    seen: list[int] = []

    async def main() -> None:
        got = asyncio.Event()

        async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            sock = writer.get_extra_info("socket")
            seen.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()
            got.set()

        server = await asyncio.start_server(on_connect, sock=listener)
        async with server:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            await asyncio.wait_for(got.wait(), 10)
            writer.close()

    asyncio.run(main())
    assert seen == [1]
