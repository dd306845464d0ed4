#!/usr/bin/env python3
"""Python `websockets` echo server for scripts/interop.sh.

Echoes every text and binary message, with permessage-deflate enabled.

    py_server.py [--port 0] [--param NAME[=VALUE]]...

--param takes RFC 7692 names with server semantics:
server_max_window_bits=N (our compressor's window, announced),
client_max_window_bits=N (asked of clients that offer the parameter),
server_no_context_takeover, client_no_context_takeover (both announced).
Without --param the library's default is used (compression="deflate", which
is server_max_window_bits=12, client_max_window_bits=12).

Binds 127.0.0.1 (port 0 = any free one) and prints
"py_server listening on ws://127.0.0.1:PORT" once it accepts connections.
Runs until killed.
"""

import argparse
import asyncio
import sys

from websockets.asyncio.server import serve
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory


def factory_kwargs(params):
    """RFC 7692 --param list -> ServerPerMessageDeflateFactory arguments."""
    kwargs = {}
    for p in params:
        name, _, value = p.partition("=")
        if name in ("server_no_context_takeover", "client_no_context_takeover") and not value:
            kwargs[name] = True
        elif name in ("server_max_window_bits", "client_max_window_bits") and value:
            kwargs[name] = int(value)
        else:
            sys.exit(f"py_server: unsupported --param {p}")
    return kwargs


async def echo(ws):
    async for message in ws:
        await ws.send(message)


async def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--param", action="append", default=[])
    args = parser.parse_args()
    if args.param:
        options = {"extensions": [ServerPerMessageDeflateFactory(**factory_kwargs(args.param))], "compression": None}
    else:
        options = {"compression": "deflate"}
    async with serve(echo, "127.0.0.1", args.port, max_size=None, **options) as server:
        port = server.sockets[0].getsockname()[1]
        print(f"py_server listening on ws://127.0.0.1:{port}", flush=True)
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
