// Shared by node_client.js and node_server.js: command line, ws's
// perMessageDeflate options from RFC 7692 parameter names, test messages.
'use strict';

// --url URL, --port N, --param NAME[=VALUE] (repeatable).
function parseArgs(argv) {
  const args = { url: null, port: 0, params: [] };
  for (let i = 0; i < argv.length; i += 2) {
    const [flag, value] = [argv[i], argv[i + 1]];
    if (value === undefined) fail(`missing value after ${flag}`);
    if (flag === '--url') args.url = value;
    else if (flag === '--port') args.port = Number(value);
    else if (flag === '--param') args.params.push(value);
    else fail(`unknown option ${flag}`);
  }
  return args;
}

// RFC 7692 names -> ws's perMessageDeflate options. ws gives them the RFC's
// meaning for its role: a client requests server_* and offers client_*, a
// server uses server_* itself and asks client_* of the client.
function deflateOptions(params, role) {
  const options = {};
  for (const p of params) {
    const [name, value] = p.split('=', 2);
    const bits = () => {
      const n = Number(value);
      if (!Number.isInteger(n) || n < 8 || n > 15) fail(`bad value in --param ${p}`);
      return n;
    };
    if (name === 'server_no_context_takeover' && value === undefined) options.serverNoContextTakeover = true;
    else if (name === 'client_no_context_takeover' && value === undefined) options.clientNoContextTakeover = true;
    else if (name === 'server_max_window_bits' && value !== undefined) options.serverMaxWindowBits = bits();
    else if (name === 'client_max_window_bits' && value !== undefined) options.clientMaxWindowBits = bits();
    else if (name === 'client_max_window_bits' && role === 'client') options.clientMaxWindowBits = true;
    else fail(`unsupported --param ${p}`);
  }
  return options;
}

// Deterministic pseudo-random bytes (xorshift32), so that runs are repeatable.
function prng(seed) {
  let x = seed >>> 0 || 1;
  const u32 = () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
  return {
    bytes(n) {
      const b = Buffer.alloc(n);
      for (let i = 0; i < n; i++) b[i] = u32() & 0xff;
      return b;
    },
    int(lo, hi) {
      return lo + (u32() % (hi - lo + 1));
    },
  };
}

// [description, payload] pairs: strings go as text, Buffers as binary.
function testMessages() {
  const rnd = prng(7692);
  const unit = 'weft ✓ héllo wörld κόσμε 𝄞 ';
  // Compressible text of n UTF-8 bytes, or just under (whole characters).
  const text = (n) => {
    let bytes = Buffer.from(unit.repeat(Math.floor(n / Buffer.byteLength(unit)) + 1), 'utf8').subarray(0, n);
    // Drop a partly cut character at the end.
    while (!Buffer.from(bytes.toString('utf8'), 'utf8').equals(bytes)) {
      bytes = bytes.subarray(0, bytes.length - 1);
    }
    return bytes.toString('utf8');
  };
  // Incompressible text of 1- to 4-byte characters.
  const randomText = (chars) => {
    const ranges = [[0x20, 0x7e], [0xa0, 0x7ff], [0x800, 0xd7ff], [0xe000, 0xfffd], [0x10000, 0x10ffff]];
    let s = '';
    for (let i = 0; i < chars; i++) s += String.fromCodePoint(rnd.int(...ranges[rnd.int(0, ranges.length - 1)]));
    return s;
  };
  const msgs = [];
  for (const n of [0, 1, 5, 125, 126, 1000, 65535, 65536, 70000, 1 << 20]) {
    msgs.push([`text ${n} B`, text(n)]);
    msgs.push([`random binary ${n} B`, rnd.bytes(n)]);
  }
  // Repeats 3000 bytes apart: a compressor must not reach back that far with
  // a 9-bit (512 B) window; sent twice to exercise context takeover.
  const block = Buffer.concat(Array(20).fill(rnd.bytes(3000)));
  msgs.push(['long-range binary', block], ['long-range binary again', block]);
  msgs.push(['random text 20000 chars', randomText(20000)]);
  const compressible = Buffer.alloc(1 << 20);
  for (let i = 0; i < compressible.length; i++) compressible[i] = (i * 7) % 251;
  msgs.push(['compressible binary 1 MiB', compressible]);
  return msgs;
}

function fail(msg) {
  console.error(msg);
  process.exit(2);
}

module.exports = { parseArgs, deflateOptions, testMessages };
