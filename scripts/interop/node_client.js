#!/usr/bin/env node
// Node `ws` client for scripts/interop.sh.
//
// Connects to an echo server offering permessage-deflate (threshold 0, so
// every message is compressed), sends text (with multi-byte UTF-8) and binary
// messages from 0 B to 1 MiB, compressible and random, some fragmented, then
// a burst of small pipelined ones, and checks that every echo is identical
// (same type, same bytes, same order).
//
//   node node_client.js --url ws://127.0.0.1:PORT/ [--param NAME[=VALUE]]...
//
// --param takes RFC 7692 names with client semantics (as echo_check):
// server_max_window_bits=N (requested), client_max_window_bits[=N] (offered;
// our compressor's window), server_no_context_takeover (requested),
// client_no_context_takeover (offered and honoured).
//
// Prints one JSON line {"ok":..., "negotiated":"<Sec-WebSocket-Extensions>",
// "messages":N} and exits 1 on any failure, including when permessage-deflate
// was not negotiated.
'use strict';

const WebSocket = require('ws');
const { parseArgs, deflateOptions, testMessages } = require('./node_common');

const RECV_TIMEOUT_MS = 30000; // for any one echo

// Messages arrive through a queue so that the test can await them in order.
function receiver(ws) {
  const queue = [];
  const waiters = [];
  let failure = null;
  const settle = () => {
    while (waiters.length && (queue.length || failure)) {
      const w = waiters.shift();
      clearTimeout(w.timer);
      if (queue.length) w.resolve(queue.shift());
      else w.reject(failure);
    }
  };
  ws.on('message', (data, isBinary) => {
    queue.push({ data, isBinary });
    settle();
  });
  ws.on('error', (err) => {
    failure = failure || err;
    settle();
  });
  ws.on('close', (code, reason) => {
    failure = failure || new Error(`connection closed (${code} ${reason})`);
    settle();
  });
  return (what) =>
    new Promise((resolve, reject) => {
      const w = { resolve, reject };
      w.timer = setTimeout(() => {
        waiters.splice(waiters.indexOf(w), 1);
        reject(new Error(`${what}: no echo within ${RECV_TIMEOUT_MS} ms`));
      }, RECV_TIMEOUT_MS);
      waiters.push(w);
      settle();
    });
}

function checkEcho(echo, sent, what) {
  const sentBinary = Buffer.isBuffer(sent);
  const sentBytes = sentBinary ? sent : Buffer.from(sent, 'utf8');
  if (echo.isBinary !== sentBinary || !echo.data.equals(sentBytes)) {
    throw new Error(
      `${what}: wrong echo (${echo.isBinary ? 'binary' : 'text'} of ${echo.data.length} B, ` +
        `sent ${sentBinary ? 'binary' : 'text'} of ${sentBytes.length} B)`
    );
  }
}

const send = (ws, data, options) =>
  new Promise((resolve, reject) => ws.send(data, options, (err) => (err ? reject(err) : resolve())));

async function run(url, params) {
  const ws = new WebSocket(url, {
    perMessageDeflate: { ...deflateOptions(params, 'client'), threshold: 0 },
    maxPayload: 64 << 20,
    handshakeTimeout: 10000,
  });
  const next = receiver(ws);
  let negotiated = '';
  ws.on('upgrade', (res) => {
    negotiated = res.headers['sec-websocket-extensions'] || '';
  });
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  if (!ws.extensions.split(',').map((s) => s.trim()).includes('permessage-deflate')) {
    throw new Error(`permessage-deflate not negotiated (server answered ${JSON.stringify(negotiated)})`);
  }
  let count = 0;
  const messages = testMessages();
  for (let i = 0; i < messages.length; i++) {
    let [what, payload] = messages[i];
    const binary = Buffer.isBuffer(payload);
    if (i % 4 === 3) {
      // Fragmented: three frames, cut on byte (not character) boundaries.
      const bytes = binary ? payload : Buffer.from(payload, 'utf8');
      const third = Math.floor(bytes.length / 3);
      await send(ws, bytes.subarray(0, third), { binary, fin: false });
      await send(ws, bytes.subarray(third, 2 * third), { binary, fin: false });
      await send(ws, bytes.subarray(2 * third), { binary, fin: true });
      what += ' (fragmented)';
    } else {
      await send(ws, payload, { binary });
    }
    checkEcho(await next(what), payload, what);
    count++;
  }
  // A burst of small pipelined messages sharing content across messages.
  const burst = [];
  for (let i = 0; i < 50; i++) burst.push(`burst ${i}: weft ✓ κόσμε 𝄞 `.repeat((i % 7) + 1));
  for (let i = 0; i < 50; i++) burst.push(Buffer.from('\x00\x01burst'.repeat((i % 5) + 1), 'latin1'));
  const sends = burst.map((payload) => send(ws, payload, { binary: Buffer.isBuffer(payload) }));
  for (let i = 0; i < burst.length; i++) {
    checkEcho(await next(`burst message ${i}`), burst[i], `burst message ${i}`);
    count++;
  }
  await Promise.all(sends);
  await new Promise((resolve) => {
    ws.once('close', resolve);
    ws.close(1000, 'done');
    setTimeout(resolve, 5000).unref();
  });
  return { negotiated, count };
}

const args = parseArgs(process.argv.slice(2));
run(args.url, args.params).then(
  ({ negotiated, count }) => {
    console.log(JSON.stringify({ ok: true, negotiated, messages: count }));
    process.exit(0);
  },
  (err) => {
    console.log(JSON.stringify({ ok: false, error: String(err && err.message ? err.message : err), messages: 0 }));
    process.exit(1);
  }
);
