#!/usr/bin/env node
// Drives two headless Chromium pages of the axum_broadcast example through
// the DevTools protocol (over `ws`), for scripts/broadcast_browser.sh.
//
//   node broadcast_check.js --phase messages|closed --url URL \
//        --user-data-dir DIR1 --user-data-dir DIR2 [--timeout-ms 60000]
//
// Each browser was started with --remote-debugging-port=0 and its own
// --user-data-dir, URL as its page. Phase "messages": waits until both
// pages are connected with permessage-deflate negotiated, has each page
// send one text message, and waits until both pages show both messages.
// Phase "closed": waits until both pages saw the server's Close 1001.
// Prints one JSON line and exits 1 on any failure.
'use strict';

const fs = require('fs');
const http = require('http');
const path = require('path');
const WebSocket = require('ws');

function parseArgs(argv) {
  const args = { phase: null, url: null, dirs: [], timeoutMs: 60000 };
  for (let i = 0; i < argv.length; i += 2) {
    const v = argv[i + 1];
    if (argv[i] === '--phase') args.phase = v;
    else if (argv[i] === '--url') args.url = v;
    else if (argv[i] === '--user-data-dir') args.dirs.push(v);
    else if (argv[i] === '--timeout-ms') args.timeoutMs = Number(v);
    else throw new Error(`unknown option ${argv[i]}`);
  }
  if (!['messages', 'closed'].includes(args.phase) || !args.url || args.dirs.length !== 2) {
    throw new Error('--phase messages|closed, --url and two --user-data-dir are required');
  }
  return args;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function getJson(url) {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { timeout: 5000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk) => (body += chunk));
      res.on('end', () => {
        try {
          resolve(JSON.parse(body));
        } catch (err) {
          reject(err);
        }
      });
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${url} timed out`)));
    req.on('error', reject);
  });
}

async function poll(what, deadline, attempt) {
  let last = null;
  while (Date.now() < deadline) {
    try {
      const value = await attempt();
      if (value != null) return value;
    } catch (err) {
      last = err;
    }
    await sleep(200);
  }
  throw new Error(`timed out waiting for ${what}${last ? ` (last error: ${last.message})` : ''}`);
}

async function page(dir, url, deadline) {
  const portFile = path.join(dir, 'DevToolsActivePort');
  const port = await poll('DevToolsActivePort', deadline, () => {
    const first = fs.readFileSync(portFile, 'utf8').split('\n')[0];
    return /^\d+$/.test(first) ? Number(first) : null;
  });
  const target = await poll(`a page at ${url}`, deadline, async () => {
    const targets = await getJson(`http://127.0.0.1:${port}/json/list`);
    return targets.find((t) => t.type === 'page' && t.url === url && t.webSocketDebuggerUrl) || null;
  });
  const ws = new WebSocket(target.webSocketDebuggerUrl, { perMessageDeflate: false });
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  let nextId = 1;
  const pending = new Map();
  ws.on('message', (data) => {
    const msg = JSON.parse(data);
    const p = pending.get(msg.id);
    if (!p) return;
    pending.delete(msg.id);
    if (msg.error) p.reject(new Error(msg.error.message));
    else p.resolve(msg.result);
  });
  const send = (method, params) => {
    const id = nextId++;
    ws.send(JSON.stringify({ id, method, params }));
    return new Promise((resolve, reject) => pending.set(id, { resolve, reject }));
  };
  return {
    async evaluate(expression) {
      const { result, exceptionDetails } = await send('Runtime.evaluate', { expression, returnByValue: true });
      if (exceptionDetails) throw new Error(`evaluation failed: ${exceptionDetails.text}`);
      return result.value;
    },
    close: () => ws.close(),
  };
}

async function run({ phase, url, dirs, timeoutMs }) {
  const deadline = Date.now() + timeoutMs;
  const pages = [];
  for (const d of dirs) pages.push(await page(d, url, deadline));
  try {
    const state = () => Promise.all(pages.map((p) => p.evaluate('window.weft || null')));
    if (phase === 'closed') {
      const closed = await poll('both pages to see the server close', deadline, async () => {
        const s = await state();
        return s.every((w) => w && w.closed) ? s.map((w) => w.closed) : null;
      });
      const ok = closed.every((c) => c.code === 1001);
      return { ok, closed };
    }
    const open = await poll('both pages to connect', deadline, async () => {
      const s = await state();
      return s.every((w) => w && w.open) ? s : null;
    });
    const extensions = open.map((w) => w.extensions);
    const tag = `${process.pid}-${Date.now()}`;
    const texts = [`hello from page A ${tag}`, `hello from page B ${tag}`];
    for (let i = 0; i < 2; i++) await pages[i].evaluate(`window.weftSend(${JSON.stringify(texts[i])})`);
    const seen = await poll('both pages to show both messages', deadline, async () => {
      const s = await state();
      return s.every((w) => texts.every((t) => w.messages.includes(t))) ? s.map((w) => w.messages) : null;
    });
    const ok = extensions.every((e) => /permessage-deflate/.test(e));
    return { ok, extensions, messages: seen.map((m) => m.length) };
  } finally {
    pages.forEach((p) => p.close());
  }
}

run(parseArgs(process.argv.slice(2))).then(
  (result) => {
    console.log(JSON.stringify(result));
    process.exit(result.ok ? 0 : 1);
  },
  (err) => {
    console.log(JSON.stringify({ ok: false, error: err.message }));
    process.exit(1);
  },
);
