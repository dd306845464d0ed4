#!/usr/bin/env node
// Node `ws` echo server for scripts/interop.sh.
//
// Echoes every text and binary message as it came, with permessage-deflate
// enabled (threshold 0, so every message is compressed).
//
//   node node_server.js [--port 0] [--param NAME[=VALUE]]...
//
// --param takes RFC 7692 names with server semantics:
// server_max_window_bits=N (our compressor's window, announced),
// client_max_window_bits=N (asked of clients that offer the parameter),
// server_no_context_takeover, client_no_context_takeover (both announced).
//
// Binds 127.0.0.1 (port 0 = any free one) and prints
// "node_server listening on ws://127.0.0.1:PORT" once it accepts
// connections. Runs until killed.
'use strict';

const { WebSocketServer } = require('ws');
const { parseArgs, deflateOptions } = require('./node_common');

const args = parseArgs(process.argv.slice(2));
const wss = new WebSocketServer({
  host: '127.0.0.1',
  port: args.port,
  perMessageDeflate: { ...deflateOptions(args.params, 'server'), threshold: 0 },
  maxPayload: 64 << 20,
});

wss.on('connection', (ws, req) => {
  console.log(`connection; Sec-WebSocket-Extensions offered: ${req.headers['sec-websocket-extensions'] || '(none)'}`);
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  ws.on('error', (err) => console.error(`connection error: ${err.message}`));
});
wss.on('listening', () => {
  console.log(`node_server listening on ws://127.0.0.1:${wss.address().port}`);
});
wss.on('error', (err) => {
  console.error(`server error: ${err.message}`);
  process.exit(1);
});
