#!/usr/bin/env node
// Reads the outcome of echo_page.html's ?selftest from a headless Chromium,
// through the DevTools protocol (over `ws`), for scripts/interop.sh.
//
//   node browser_check.js --user-data-dir DIR --url URL [--timeout-ms 90000]
//
// The browser is started by the caller with --remote-debugging-port=0 and
// --user-data-dir=DIR, and URL as its page; Chromium then writes its DevTools
// port into DIR/DevToolsActivePort. This program finds the page whose address
// is URL, polls `window.weftResults` until the self-test is done, and prints
// one JSON line {"ok":..., "negotiated":"<ws.extensions>", "messages":N}.
// It exits 1 unless every echo matched and ws.extensions has
// permessage-deflate (the page checks both; so does this program).
'use strict';

const fs = require('fs');
const http = require('http');
const path = require('path');
const WebSocket = require('ws');

function parseArgs(argv) {
  const args = { userDataDir: null, url: null, timeoutMs: 90000 };
  for (let i = 0; i < argv.length; i += 2) {
    if (argv[i] === '--user-data-dir') args.userDataDir = argv[i + 1];
    else if (argv[i] === '--url') args.url = argv[i + 1];
    else if (argv[i] === '--timeout-ms') args.timeoutMs = Number(argv[i + 1]);
    else throw new Error(`unknown option ${argv[i]}`);
  }
  if (!args.userDataDir || !args.url) throw new Error('--user-data-dir and --url are required');
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

// Retries `attempt` (which returns a value, or null to try again) until the deadline.
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

// A minimal DevTools protocol session on one page target.
async function connect(wsUrl) {
  const ws = new WebSocket(wsUrl, { perMessageDeflate: false, maxPayload: 256 << 20 });
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
    if (msg.error) p.reject(new Error(`${msg.error.message} (${msg.error.code})`));
    else p.resolve(msg.result);
  });
  ws.on('close', () => {
    for (const p of pending.values()) p.reject(new Error('DevTools connection closed'));
    pending.clear();
  });
  return {
    send(method, params = {}) {
      const id = nextId++;
      ws.send(JSON.stringify({ id, method, params }));
      return new Promise((resolve, reject) => pending.set(id, { resolve, reject }));
    },
    async evaluate(expression) {
      const { result, exceptionDetails } = await this.send('Runtime.evaluate', { expression, returnByValue: true });
      if (exceptionDetails) throw new Error(`evaluation failed: ${exceptionDetails.text}`);
      return result.value;
    },
    close: () => ws.close(),
  };
}

async function run({ userDataDir, url, timeoutMs }) {
  const deadline = Date.now() + timeoutMs;
  const portFile = path.join(userDataDir, 'DevToolsActivePort');
  const port = await poll('DevToolsActivePort', deadline, () => {
    const first = fs.readFileSync(portFile, 'utf8').split('\n')[0];
    return /^\d+$/.test(first) ? Number(first) : null;
  });
  const target = await poll(`a page at ${url}`, deadline, async () => {
    const targets = await getJson(`http://127.0.0.1:${port}/json/list`);
    return targets.find((t) => t.type === 'page' && t.url === url && t.webSocketDebuggerUrl) || null;
  });
  const page = await connect(target.webSocketDebuggerUrl);
  try {
    const results = await poll('the self-test to finish', deadline, async () => {
      const r = await page.evaluate('window.weftResults && window.weftResults.done ? window.weftResults : null');
      return r || null;
    });
    const pageLog = await page.evaluate("document.getElementById('log').textContent");
    return { results, pageLog };
  } finally {
    page.close();
  }
}

let args;
try {
  args = parseArgs(process.argv.slice(2));
} catch (err) {
  console.error(`browser_check: ${err.message}`);
  process.exit(2);
}
run(args).then(
  ({ results, pageLog }) => {
    const negotiated = results.extensions || '';
    const hasDeflate = negotiated.split(',').some((e) => e.split(';')[0].trim() === 'permessage-deflate');
    const ok = results.ok === true && hasDeflate && results.failures === 0 && results.echoes === results.sent;
    const error = ok ? undefined : results.error || (hasDeflate ? 'self-test failed' : 'permessage-deflate not negotiated');
    console.log(JSON.stringify({ ok, negotiated, messages: results.echoes, ...(ok ? {} : { error }) }));
    if (!ok) console.error(`page log:\n${pageLog}`);
    process.exit(ok ? 0 : 1);
  },
  (err) => {
    console.log(JSON.stringify({ ok: false, error: err.message, messages: 0 }));
    process.exit(1);
  }
);
