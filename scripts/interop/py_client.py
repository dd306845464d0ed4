#!/usr/bin/env python3
"""Python `websockets` client for scripts/interop.sh.

Connects to an echo server offering permessage-deflate, sends text (with
multi-byte UTF-8) and binary messages from 0 B to 1 MiB, compressible and
random, some fragmented, then a burst of small pipelined ones, and checks
that every echo is identical (same type, same content, same order).

    py_client.py --url ws://127.0.0.1:PORT/ [--param NAME[=VALUE]]...

--param takes RFC 7692 names with client semantics (as echo_check):
server_max_window_bits=N (requested), client_max_window_bits[=N] (offered;
our compressor's window), server_no_context_takeover (requested),
client_no_context_takeover (offered and honoured). Without --param the
library's default offer is used (compression="deflate").

Prints one JSON line {"ok":..., "negotiated":"<Sec-WebSocket-Extensions>",
"messages":N} and exits 1 on any failure, including when permessage-deflate
was not negotiated.
"""

import argparse
import asyncio
import json
import random
import sys

from websockets.asyncio.client import connect
from websockets.extensions.permessage_deflate import (
    ClientPerMessageDeflateFactory,
    PerMessageDeflate,
)

RECV_TIMEOUT = 30  # seconds for any one echo


def factory_kwargs(params):
    """RFC 7692 --param list -> ClientPerMessageDeflateFactory arguments."""
    kwargs = {}
    for p in params:
        name, _, value = p.partition("=")
        if name in ("server_no_context_takeover", "client_no_context_takeover") and not value:
            kwargs[name] = True
        elif name == "server_max_window_bits" and value:
            kwargs[name] = int(value)
        elif name == "client_max_window_bits":
            kwargs[name] = int(value) if value else True
        else:
            sys.exit(f"py_client: unsupported --param {p}")
    return kwargs


def test_messages():
    """(description, payload) pairs: str payloads go as text, bytes as binary."""
    rnd = random.Random(7692)
    unit = "weft ✓ héllo wörld κόσμε 𝄞 "

    def text(n):  # compressible text of n UTF-8 bytes (or just under)
        b = (unit * (n // len(unit.encode()) + 1)).encode()[:n]
        return b.decode("utf-8", errors="ignore")

    def random_text(chars):  # incompressible text, 1- to 4-byte characters
        ranges = [(0x20, 0x7E), (0xA0, 0x7FF), (0x800, 0xD7FF), (0xE000, 0xFFFD), (0x10000, 0x10FFFF)]
        return "".join(chr(rnd.randint(*rnd.choice(ranges))) for _ in range(chars))

    msgs = []
    for n in (0, 1, 5, 125, 126, 1000, 65535, 65536, 70000, 1 << 20):
        msgs.append((f"text {n} B", text(n)))
        msgs.append((f"random binary {n} B", rnd.randbytes(n)))
    # Repeats 3000 bytes apart: a compressor must not reach back that far
    # with a 9-bit (512 B) window; sent twice to exercise context takeover.
    block = rnd.randbytes(3000) * 20
    msgs += [("long-range binary", block), ("long-range binary again", block)]
    msgs.append(("random text 20000 chars", random_text(20000)))
    msgs.append(("compressible binary 1 MiB", bytes((i * 7) % 251 for i in range(1 << 20))))
    return msgs


async def expect_echo(ws, sent, what):
    echo = await asyncio.wait_for(ws.recv(), RECV_TIMEOUT)
    if type(echo) is not type(sent) or echo != sent:
        raise AssertionError(
            f"{what}: wrong echo ({type(echo).__name__} of {len(echo)}, "
            f"sent {type(sent).__name__} of {len(sent)})"
        )


async def run(url, params):
    if params:
        options = {"extensions": [ClientPerMessageDeflateFactory(**factory_kwargs(params))], "compression": None}
    else:
        options = {"compression": "deflate"}
    async with connect(url, max_size=None, open_timeout=10, close_timeout=10, **options) as ws:
        negotiated = ws.response.headers.get("Sec-WebSocket-Extensions", "")
        if not any(isinstance(e, PerMessageDeflate) for e in ws.protocol.extensions):
            raise AssertionError(f"permessage-deflate not negotiated (server answered {negotiated!r})")
        count = 0
        for i, (what, payload) in enumerate(test_messages()):
            if i % 4 == 3:  # fragmented: three frames
                third = len(payload) // 3
                await ws.send([payload[:third], payload[third : 2 * third], payload[2 * third :]])
                what += " (fragmented)"
            else:
                await ws.send(payload)
            await expect_echo(ws, payload, what)
            count += 1
        # A burst of small pipelined messages sharing content across messages.
        burst = [f"burst {i}: weft ✓ κόσμε 𝄞 " * (i % 7 + 1) for i in range(50)]
        burst += [b"\x00\x01burst" * (i % 5 + 1) for i in range(50)]
        for payload in burst:
            await ws.send(payload)
        for i, payload in enumerate(burst):
            await expect_echo(ws, payload, f"burst message {i}")
        count += len(burst)
        return negotiated, count


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--param", action="append", default=[])
    args = parser.parse_args()
    try:
        negotiated, count = asyncio.run(run(args.url, args.param))
    except Exception as err:  # report any failure as JSON
        print(json.dumps({"ok": False, "error": f"{type(err).__name__}: {err}", "messages": 0}))
        sys.exit(1)
    print(json.dumps({"ok": True, "negotiated": negotiated, "messages": count}, ensure_ascii=False))


if __name__ == "__main__":
    main()
