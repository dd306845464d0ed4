"""Seeds from captured Autobahn traffic (imported by make_seeds.py).

Inputs: fuzz/seeds/autobahn/<role>-<case>.{c2s,s2c}, trimmed captures of one
kosoku case each (handshake head, then whole frames, at most TRIM bytes and
TRIM_GROUPS messages, cut after a complete data message), and
fuzz/seeds/autobahn/manifest.json: per capture, whether it was trimmed, the
negotiated extension, and what the real weft end did in the full run (data
messages it echoed, the code of the first Close it sent). `role` is weft's
role: `server` captures are kosoku's fuzzingclient against echo_server,
`client` captures are autobahn_client against kosoku's fuzzingserver.
`make_seeds.py --from-capture DIR` rewrites them from a fresh capture made
by capture_autobahn.py.

Outputs (seed-ab-*):
- connection_server / connection_client: a `weft_fuzz::conn::Case` encoded
  the way `arbitrary` 1.x decodes it (see `Enc`): the negotiated extension,
  then per captured message or control frame one `Op::Raw` with its wire
  bytes and one `Op::Deliver` (read sizes cycling through 0/1/7/64), and an
  `Op::Send` echoing each data message, as the real end did. `-limit`
  variants set max_message below the largest message (expect 1009).
- frame_header: each distinct captured header.
- permessage_inflate: the first compressed message of each deflate case,
  as `Mode::Raw` chunks (one per frame); `-budget` variants with a budget
  below its size.
- perframe_inflate: the captured plain cases' frames: well-formed messages as
  `Op::Message` (fragments as captured, alternately compressed), pings as
  `Op::Ping`, everything else as hand-made `Op::Frame`.

`make_seeds.py --check` runs the built connection targets on every
connection seed with WEFT_FUZZ_SUMMARY=1 and compares the harness' summary
with the manifest: messages delivered (those the real end echoed, or all kept
ones for trimmed captures), the close code sent (the real end's), 1009 for
`-limit` seeds.
"""
import json, os, re, zlib

HERE = os.path.dirname(os.path.abspath(__file__))
CAPS = os.path.join(HERE, "autobahn")
TRIM = 1536  # bytes of frames kept per direction
TRIM_GROUPS = 24  # and at most this many messages / lone frames

# ---------------------------------------------------------------- frames


def split_head(buf):
    i = buf.find(b"\r\n\r\n")
    return (buf[: i + 4], buf[i + 4 :]) if i >= 0 else (buf, b"")


def frames(buf):
    """Whole frames of buf: dicts with raw bytes, header length, fin, rsv,
    opcode, unmasked payload. Stops at an incomplete frame."""
    out, i = [], 0
    while i + 2 <= len(buf):
        b0, b1 = buf[i], buf[i + 1]
        n, hl = b1 & 0x7F, 2
        if n == 126:
            if i + 4 > len(buf):
                break
            n, hl = int.from_bytes(buf[i + 2 : i + 4], "big"), 4
        elif n == 127:
            if i + 10 > len(buf):
                break
            n, hl = int.from_bytes(buf[i + 2 : i + 10], "big"), 10
        key = None
        if b1 & 0x80:
            key = buf[i + hl : i + hl + 4]
            hl += 4
        if i + hl + n > len(buf):
            break
        p = buf[i + hl : i + hl + n]
        if key:
            p = bytes(c ^ key[j % 4] for j, c in enumerate(p))
        out.append(dict(raw=buf[i : i + hl + n], hl=hl, b0=b0, fin=bool(b0 & 0x80),
                        rsv=(b0 >> 4) & 7, op=b0 & 0xF, payload=bytes(p)))
        i += hl + n
    return out


def groups(fs):
    """Frames grouped into what the target reads as one unit: a data message
    (first frame to FIN, with interleaved control frames inside), or a lone
    frame."""
    out, cur = [], []
    for f in fs:
        cur.append(f)
        if f["op"] in (0, 1, 2) and f["fin"] or (not any(g["op"] in (0, 1, 2) for g in cur)):
            out.append(cur)
            cur = []
    if cur:
        out.append(cur)
    return out


def messages(fs, ext, z=None):
    """Data messages in fs (opcode, payload; inflated when RSV1 and ext,
    with z, a raw inflater carrying the context of earlier messages)."""
    out, cur, z = [], None, z or zlib.decompressobj(-15)
    for f in fs:
        if f["op"] in (1, 2):
            cur = [f["op"], f["rsv"] & 4, bytearray(f["payload"])]
        elif f["op"] == 0 and cur:
            cur[2] += f["payload"]
        if f["op"] in (0, 1, 2) and f["fin"] and cur:
            op, comp, p = cur
            if comp and ext:
                try:
                    p = z.decompress(bytes(p) + b"\x00\x00\xff\xff")
                except zlib.error:
                    p = None
            if p is not None:
                out.append((op, bytes(p)))
            cur = None
    return out


def ext_of(head):
    m = re.search(rb"(?im)^sec-websocket-extensions:\s*(.*?)\r$", head)
    return m.group(1).decode() if m else ""


# ---------------------------------------------------------------- arbitrary


class Enc:
    """Writes bytes that `arbitrary` 1.x (derive) decodes into a given value:
    integers little-endian (`fill_buffer`), bool = low bit of a u8, enum
    variant i of n = a u32 x with (x * n) >> 32 == i, Option = bool then
    value, Vec = (true, element)* then false (also for the take-rest field)."""

    def __init__(self):
        self.b = bytearray()

    def u8(self, v):
        self.b.append(v & 0xFF)

    def u16(self, v):
        self.b += (v & 0xFFFF).to_bytes(2, "little")

    def u32(self, v):
        self.b += (v & 0xFFFFFFFF).to_bytes(4, "little")

    def bool(self, v):
        self.u8(1 if v else 0)

    def variant(self, i, n):
        x = -(-(i << 32) // n)  # ceil
        assert (x * n) >> 32 == i
        self.u32(x)

    def vec(self, items, each):
        for x in items:
            self.bool(True)
            each(x)
        self.bool(False)

    def bytes_(self, data):
        self.vec(data, self.u8)


# weft_fuzz::conn::Op, in declaration order.
OPS = ["PeerSend", "PeerFragments", "PeerPing", "PeerClose", "Frame", "Raw", "Deliver",
       "Send", "SendFragment", "Ping", "Pong", "Close", "Tick", "Idle"]


def conn_case(groups_, ext, max_message, exact, echo):
    e = Enc()
    if ext:
        # ExtChoice::PerMessage with 15-bit windows and context takeover:
        # decodes whatever window and takeover the capture negotiated.
        e.variant(1, 3)
        for v in (7, 7, 0, 0, 0, 0):
            e.u8(v)
    else:
        e.variant(0, 3)
    e.u16(0xFFFF)  # max_frame
    e.u16(max_message)
    e.u8(0xFF)  # send_frame - 1
    e.bool(exact is not None)
    if exact is not None:
        e.u16(exact)
    chunks = [0, 1, 7, 64]
    ops = []
    z = zlib.decompressobj(-15)
    for i, g in enumerate(groups_):
        ops.append(("Raw", b"".join(f["raw"] for f in g)))
        ops.append(("Deliver", chunks[i % len(chunks)]))
        if echo:
            for op, p in messages(g, ext, z):
                ops.append(("Send", op == 1, p, i % 2 == 1))

    def one(o):
        e.variant(OPS.index(o[0]), len(OPS))
        if o[0] == "Raw":
            e.bytes_(o[1])
        elif o[0] == "Deliver":
            e.u8(o[1])
            e.u16(0xFFFF)
        elif o[0] == "Send":
            e.bool(o[1])  # text
            e.bytes_(o[2])
            e.bool(o[3])  # direct
            e.bool(True)  # compress
    e.vec(ops, one)
    return bytes(e.b)


def inflate_case(chunks, budget):
    e = Enc()
    e.u8(6)  # bits: 9 + 6 = 15
    e.u16(budget)
    e.u8(0)  # Release::Never
    e.bool(False)  # pooled
    e.variant(1, 2)  # Mode::Raw
    e.vec(chunks, e.bytes_)
    return bytes(e.b)


def perframe_case(groups_):
    e = Enc()
    e.u16(0xFFFF)
    ops = []
    for g in groups_:
        data = [f for f in g if f["op"] in (0, 1, 2)]
        ok = (data and data[0]["op"] in (1, 2) and all(f["op"] == 0 for f in data[1:])
              and all(f["rsv"] == 0 for f in g) and data[-1]["fin"]
              and all(not f["fin"] for f in data[:-1]))
        if ok:
            for f in g:
                if f["op"] == 9 and len(f["payload"]) <= 125:
                    ops.append(("Ping", f["payload"]))
            ops.append(("Message", data[0]["op"] == 1,
                        [(k % 2 == 1, f["payload"]) for k, f in enumerate(data)]))
        else:
            for f in g:
                ops.append(("Frame", f["b0"], f["payload"]))

    def one(o):
        if o[0] == "Message":
            e.variant(0, 4)
            e.bool(o[1])
            e.vec(o[2], lambda part: (e.bool(part[0]), e.bytes_(part[1])))
        elif o[0] == "Frame":
            e.variant(1, 4)
            e.u8(o[1])
            e.bytes_(o[2])
        else:
            e.variant(2, 4)
            e.bytes_(o[1])
    e.vec(ops, one)
    return bytes(e.b)


# ---------------------------------------------------------------- capture


def trim(buf):
    """Handshake head plus the frames of at most TRIM bytes, cut after a
    whole group; (bytes, trimmed?)."""
    head, rest = split_head(buf)
    fs = frames(rest)
    kept, size = [], 0
    for g in groups(fs):
        n = sum(len(f["raw"]) for f in g)
        if (size + n > TRIM or len(kept) == TRIM_GROUPS) and kept:
            return head + b"".join(f["raw"] for g in kept for f in g), True
        kept.append(g)
        size += n
    return buf, False


def first_close(fs):
    for f in fs:
        if f["op"] == 8:
            p = f["payload"]
            return int.from_bytes(p[:2], "big") if len(p) >= 2 else "none"
    return None


def from_capture(cap):
    """Trims a capture_autobahn.py directory into fuzz/seeds/autobahn/."""
    os.makedirs(CAPS, exist_ok=True)
    for f in os.listdir(CAPS):
        os.remove(os.path.join(CAPS, f))
    manifest = {}
    for role in ("server", "client"):
        reports = os.path.join(cap, "reports-" + role)
        ids = {}
        for f in os.listdir(reports):
            if "_case_" in f and f.endswith(".json"):
                j = json.load(open(os.path.join(reports, f)))
                ids[j["case"]] = j["id"]
        d = os.path.join(cap, role)
        for name in sorted(os.listdir(d)):
            if not name.endswith(".c2s"):
                continue
            c2s = open(os.path.join(d, name), "rb").read()
            s2c = open(os.path.join(d, name[:-4] + ".s2c"), "rb").read()
            if role == "server":
                num = int(name[:4])
            else:
                m = re.match(rb"GET /runCase\?case=(\d+)", c2s)
                if not m:
                    continue  # getCaseCount, updateReports
                num = int(m.group(1))
            case = ids[num]
            # weft's input is what the other end sent.
            inp, out = (c2s, s2c) if role == "server" else (s2c, c2s)
            ext = "permessage-deflate" in ext_of(split_head(s2c)[0])
            out_fs = frames(split_head(out)[1])
            t_in, cut_in = trim(inp)
            key = f"{role}-{case}"
            open(os.path.join(CAPS, key + ".in"), "wb").write(t_in)
            manifest[key] = dict(
                role=role, case=case, ext=ext, trimmed=cut_in,
                echoed=len(messages(out_fs, ext)), close=first_close(out_fs))
    json.dump(manifest, open(os.path.join(CAPS, "manifest.json"), "w"), indent=1, sort_keys=True)


# ---------------------------------------------------------------- seeds

LIMIT_CASES = {"1.1.3", "1.2.4", "5.19", "6.2.3", "12.1.2", "13.3.1"}


def load():
    manifest = json.load(open(os.path.join(CAPS, "manifest.json")))
    for key, m in sorted(manifest.items()):
        raw = open(os.path.join(CAPS, key + ".in"), "rb").read()
        fs = frames(split_head(raw)[1])
        yield key, m, fs


def expectations():
    """seed name -> (target, expected summary fields)."""
    out = {}
    for key, m, fs in load():
        target = "connection_" + m["role"]
        kept = len(messages(fs, m["ext"]))
        if m["trimmed"]:
            exp = dict(delivered=kept, close="-")
        else:
            exp = dict(delivered=m["echoed"], close=str(m["close"]) if m["close"] is not None else "-")
        out[(target, "ab-" + key)] = exp
        if m["case"] in LIMIT_CASES:
            out[(target, "ab-" + key + "-limit")] = dict(error="1009")
    return out


def write(put):
    headers = {}
    inflate_n = 0
    for key, m, fs in load():
        target = "connection_" + m["role"]
        gs = groups(fs)
        exact = 64 if len(key) % 2 else None
        put(target, "ab-" + key, conn_case(gs, m["ext"], 0xFFFF, exact, echo=True))
        if m["case"] in LIMIT_CASES:
            biggest = max((len(p) for _, p in messages(fs, m["ext"])), default=2)
            put(target, "ab-" + key + "-limit", conn_case(gs, m["ext"], max(1, biggest // 2), None, echo=False))
        for f in fs:
            h = f["raw"][: f["hl"]]
            sig = (f["b0"], h[1] & 0x80, f["hl"])
            headers.setdefault(sig, h)
        if m["ext"]:
            first = next((g for g in gs if g[0]["op"] in (1, 2) and g[0]["rsv"] & 4), None)
            if first and inflate_n < 12:
                chunks = [f["payload"] for f in first if f["op"] in (0, 1, 2)]
                whole = zlib.decompressobj(-15).decompress(b"".join(chunks) + b"\x00\x00\xff\xff")
                put("permessage_inflate", "ab-" + key, inflate_case(chunks, 0xFFFF))
                if len(whole) > 1:
                    put("permessage_inflate", "ab-" + key + "-budget", inflate_case(chunks, len(whole) // 2))
                inflate_n += 1
        elif not m["case"].startswith("7."):
            put("perframe_inflate", "ab-" + key, perframe_case(gs))
    for (b0, masked, hl), h in sorted(headers.items()):
        put("frame_header", f"ab-{b0:02x}-{'m' if masked else 'u'}{hl}", h)


def check(root):
    """Runs each connection seed once through its built fuzz target and
    compares the summary with the expectation; returns failures."""
    import subprocess
    fails = []
    tdir = os.path.join(root, "..", "target", "x86_64-unknown-linux-gnu", "release")
    for (target, name), exp in sorted(expectations().items()):
        seed = os.path.join(root, target, "seed-" + name)
        r = subprocess.run([os.path.join(tdir, target), seed], capture_output=True, text=True,
                           env={**os.environ, "WEFT_FUZZ_SUMMARY": "1"}, timeout=60)
        line = next((l for l in r.stderr.splitlines() if l.startswith("weft-fuzz-summary")), None)
        got = dict(kv.split("=") for kv in line.split()[1:]) if line else {}
        bad = r.returncode != 0 or any(got.get(k) != str(v) for k, v in exp.items())
        print(f"{'FAIL' if bad else 'ok  '} {target:18} {name:28} expect {exp} got {line and line[18:]}")
        if bad:
            fails.append(name)
    return fails
