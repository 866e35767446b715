"""A TCP proxy in front of PostgreSQL that counts what clients send, by protocol message.

Statements and round trips per job, for any client library (asyncpg, psycopg, awa's Rust
driver) without pg_stat_statements: every contestant connects through this proxy, which relays
bytes both ways untouched and parses only the client's side. A simple ``Query`` ('Q') or an
extended-protocol ``Execute`` ('E') is a statement; a ``Query`` or a ``Sync`` ('S') ends a round
trip (the client then waits for ReadyForQuery).

The proxy runs its own event loop in a thread: a client that blocks its caller's loop while it
connects (awa's Rust client does) must not stall the proxy it connects through.
"""

from __future__ import annotations

import asyncio
import struct
import threading
from collections import Counter

_SSL_REQUEST, _GSSENC_REQUEST = 80877103, 80877104


class CountingProxy:
    def __init__(self, host: str, port: int) -> None:
        self.upstream = (host, port)
        self.messages: Counter[str] = Counter()
        self.connections = 0
        self.port = 0
        self._loop = asyncio.new_event_loop()

    def start(self) -> CountingProxy:
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            server = self._loop.run_until_complete(
                asyncio.start_server(self._serve, "127.0.0.1", 0))
            self.port = server.sockets[0].getsockname()[1]
            ready.set()
            self._loop.run_forever()

        threading.Thread(target=run, name="counting-proxy", daemon=True).start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)

    def snapshot(self) -> dict[str, int]:
        """Statements, round trips and connections so far."""
        m = self.messages
        return {"statements": m["Q"] + m["E"], "round_trips": m["Q"] + m["S"],
                "parses": m["P"], "connections": self.connections}

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            server_r, server_w = await asyncio.open_connection(*self.upstream)
        except OSError:
            client_w.close()
            return
        await asyncio.gather(self._client_to_server(client_r, server_w),
                             self._relay(server_r, client_w), return_exceptions=True)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()

    async def _client_to_server(self, reader: asyncio.StreamReader,
                                writer: asyncio.StreamWriter) -> None:
        buffer = b""
        started = False
        try:
            while data := await reader.read(65536):
                writer.write(data)
                buffer += data
                while True:
                    if not started:  # untyped: SSL/GSS requests, then the startup message
                        if len(buffer) < 8:
                            break
                        length, code = struct.unpack("!II", buffer[:8])
                        if len(buffer) < length:
                            break
                        buffer = buffer[length:]
                        started = code not in (_SSL_REQUEST, _GSSENC_REQUEST)
                        continue
                    if len(buffer) < 5:
                        break
                    kind, length = buffer[:1].decode(), struct.unpack("!I", buffer[1:5])[0]
                    if len(buffer) < 1 + length:
                        break
                    self.messages[kind] += 1
                    buffer = buffer[1 + length:]
                await writer.drain()
        finally:
            writer.close()
