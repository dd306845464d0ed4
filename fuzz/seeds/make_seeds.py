#!/usr/bin/env python3
"""Writes the committed seed corpora (fuzz/corpus/<target>/) from the spec
vectors (docs/specs/*.md, section cited per seed) and the unit-test vectors.
Run from anywhere: python3 fuzz/seeds/make_seeds.py. Idempotent.

Also writes the seed-ab-* seeds from captured Autobahn traffic
(fuzz/seeds/autobahn/, see autobahn_seeds.py):
  --from-capture DIR  first re-trim a capture_autobahn.py output directory
  --check             then run each connection seed once through the built
                      targets (cargo +nightly fuzz build -O) and check it
                      does what its capture did; exit 1 if not"""
import os, sys, hashlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import autobahn_seeds

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "corpus")
h = bytes.fromhex

def put(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)

CRLF = lambda s: s.strip("\n").replace("\n", "\r\n").encode() + b"\r\n\r\n"

# rfc6455.md §3.1 canonical request, and variants with extension offers
# (permessage-deflate.md §3.4, perframe-deflate.md, mux.md §2).
base = """GET /chat HTTP/1.1
Host: server.example.com
Upgrade: websocket
Connection: Upgrade
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==
Origin: http://example.com
Sec-WebSocket-Protocol: chat, superchat
Sec-WebSocket-Version: 13"""
put("handshake_request", "rfc6455-3.1", CRLF(base))
offers = [
    "permessage-deflate",
    "permessage-deflate; client_max_window_bits",
    "permessage-deflate; client_max_window_bits; server_max_window_bits=10, permessage-deflate; client_max_window_bits",
    'permessage-deflate; server_max_window_bits="10"',
    "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
    "x-webkit-deflate-frame",
    "deflate-frame; max_window_bits=10; no_context_takeover",
    "mux; quota=8192",
    "mux; quota=8192, permessage-deflate",
]
for i, o in enumerate(offers):
    put("handshake_request", f"offer-{i}", CRLF(base + "\nSec-WebSocket-Extensions: " + o))
    put("extensions_header", f"offer-{i}", o.encode())
put("handshake_request", "two-ext-lines", CRLF(base + "\nSec-WebSocket-Extensions: foo\nSec-WebSocket-Extensions: bar; baz=2"))
put("handshake_request", "version-8", CRLF(base.replace("Version: 13", "Version: 8")))
put("handshake_request", "post", CRLF(base.replace("GET", "POST")))

# rfc6455.md §3.3 response; `@@` stands for the right accept key.
resp = """HTTP/1.1 101 Switching Protocols
Upgrade: websocket
Connection: Upgrade
Sec-WebSocket-Accept: @@"""
put("handshake_response", "rfc6455-3.3", CRLF(resp))
put("handshake_response", "protocol", CRLF(resp + "\nSec-WebSocket-Protocol: chat"))
answers = [
    "permessage-deflate",
    "permessage-deflate; client_max_window_bits=10",
    "permessage-deflate; server_max_window_bits=10",
    "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
    "deflate-frame",
    "deflate-frame; max_window_bits=10",
    "permessage-deflate, permessage-deflate",
    "x-unknown",
]
for i, a in enumerate(answers):
    put("handshake_response", f"answer-{i}", b"\x01" + CRLF(resp + "\nSec-WebSocket-Extensions: " + a))
    put("extensions_header", f"answer-{i}", a.encode())
put("handshake_response", "404", CRLF("HTTP/1.1 404 Not Found\nContent-Length: 0"))
put("extensions_header", "rfc6455-3.5-lines", b"foo\nbar; baz=2")
put("extensions_header", "quoted", b'x; a="10"; b = "a\\bc" ; c')

# rfc6455.md §11 frame vectors.
frames = {
    "text-hello": "81 05 48 65 6c 6c 6f",
    "masked-hello": "81 85 37 fa 21 3d 7f 9f 4d 51 58",
    "frag-1": "01 03 48 65 6c",
    "frag-2": "80 02 6c 6f",
    "ping": "89 05 48 65 6c 6c 6f",
    "pong-masked": "8a 85 37 fa 21 3d 7f 9f 4d 51 58",
    "len16": "82 7e 01 00",
    "len64": "82 7f 00 00 00 00 00 01 00 00",
    "close-1000": "88 02 03 e8",
    "close-empty": "88 00",
    "close-1byte": "88 01 03",
    "ping-nofin": "09 00",
    "rsv1": "c1 05 48 65 6c 6c 6f",
    "nonminimal": "81 7e 00 05 48 65 6c 6c 6f",
    "zero-key": "81 85 00 00 00 00 48 65 6c 6c 6f",
    # permessage-deflate.md §9
    "pmd-9.1": "c1 07 f2 48 cd c9 c9 07 00",
    "pmd-9.2": "41 03 f2 48 cd 80 04 c9 c9 07 00",
    "pmd-9.3": "c1 07 f2 48 cd c9 c9 07 00 c1 05 f2 00 11 00 00",
    "pmd-9.6": "c1 0d f2 48 05 00 00 00 ff ff ca c9 c9 07 00",
    "pmd-9.7": "41 0b f2 48 cd c9 c9 07 00 00 00 ff ff 80 01 00 c1 01 00",
    "pmd-9.8-masked": "c1 87 37 fa 21 3d c5 b2 ec f4 fe fd 21",
    "pmd-rsv1-cont": "41 03 f2 48 cd c0 04 c9 c9 07 00",
}
for name, hexs in frames.items():
    put("frame_header", name, h(hexs))
    put("connection_server", name, h(hexs))
    put("connection_client", name, h(hexs))
    put("perframe_inflate", name, h(hexs))

# permessage-deflate.md §9 payloads (the decoder's input).
payloads = {
    "9.1": "f2 48 cd c9 c9 07 00",
    "9.3": "f2 00 11 00 00",
    "9.4": "00 05 00 fa ff 48 65 6c 6c 6f 00",
    "9.5": "f3 48 cd c9 c9 07 00 00",
    "9.6": "f2 48 05 00 00 00 ff ff ca c9 c9 07 00",
    "9.7": "f2 48 cd c9 c9 07 00 00 00 ff ff 00",
}
for name, hexs in payloads.items():
    put("permessage_inflate", name, h(hexs))

# mux.md §4.9 blocks and physical messages.
blocks = {
    "acr-1": "00 01 01 61",
    "acr-2": "00 02 7d" + " 61" * 125,
    "acresp-1": "20 01 06 46 6f 6f 42 61 72",
    "acresp-2": "31 02 05 48 65 6c 6c 6f",
    "drop-1": "60 01 00",
    "drop-2000": "60 01 07 07 d0 65 72 72 6f 72",
    "drop-1000": "60 02 09 03 e8 53 75 63 63 65 73 73",
    "fc-2": "40 01 02",
    "fc-8192": "40 01 7e 20 00",
    "ncs": "80 40 7e 20 00",
    "ncs-fallback": "81 00 00",
}
for name, hexs in blocks.items():
    put("mux_wire", name, h(hexs))
    put("multiplexer", name, h("00 " + hexs))
phys = {
    "text-ch1": "01 81 48 65 6c 6c 6f",
    "drop-from-client": "00 60 01 00",
    "truncated-id": "80",
    "id-only": "01",
    "opcode-5": "00 a0",
    "drop-1byte": "00 60 00 01 00",
}
for name, hexs in phys.items():
    put("mux_wire", "phys-" + name, h(hexs))
    put("multiplexer", "phys-" + name, h(hexs))

# mux.md §3.3 variant A blocks, and whole frames as mux_wire reads them for
# variant A (first byte: the physical FIN/RSV/opcode byte; no length byte).
variant_a = {
    "block-acr-flags7": "01 1c 0d" + "".join(" %02x" % c for c in b"Hello, world!"),
    "block-acresp-256": "02 21 01 00" + " 61" * 256,
    "block-ecf-close": "01 80 88 06 46 6f 6f 42 61 72",
    "block-ecf-nofin": "01 80 08 06 46 6f 6f 42 61 72",
    "frame-acresp": "82 00 01 20 06 46 6f 6f 42 61 72",
    "frame-acresp-rejected-delta": "82 00 02 34 05 48 65 6c 6c 6f",
    "frame-drop": "82 00 01 60 00",
    "frame-drop-mux-error": "82 00 01 70 05 65 72 72 6f 72",
    "frame-ecf-close": "82 00 01 80 88 06 46 6f 6f 42 61 72",
    "frame-text-ch1": "81 01 48 65 6c 6c 6f",
}
for name, hexs in variant_a.items():
    put("mux_wire", "variant-a-" + name, h(hexs))

# Captured Autobahn traffic (autobahn_seeds.py).
if "--from-capture" in sys.argv:
    autobahn_seeds.from_capture(sys.argv[sys.argv.index("--from-capture") + 1])
autobahn_seeds.write(put)
if "--check" in sys.argv:
    sys.exit(1 if autobahn_seeds.check(ROOT) else 0)
