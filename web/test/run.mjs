// Browser tests of the web UI: starts a real messenger server (and a TCP
// relay in front of it that the tests can cut), drives headless Chromium
// through playwright-core, and runs the scenarios in scenarios.mjs.
// Run by web/browser_test.go (make test); by hand:
//   MESSENGER_BIN=bin/messenger CHAT_BIN=bin/chat node web/test/run.mjs [name-filter]
import { chromium } from 'playwright-core';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { scenarios } from './scenarios.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..', '..');
const env = process.env;
const artifacts = env.ARTIFACTS || path.join(root, 'web', 'test', 'artifacts');
fs.rmSync(artifacts, { recursive: true, force: true });
fs.mkdirSync(artifacts, { recursive: true });

/** Relay is a TCP relay to the server whose connections the tests can cut. */
class Relay {
  constructor(target) { this.target = target; this.socks = new Set(); }
  async listen() {
    this.srv = net.createServer(c => {
      const s = net.connect(this.target.port, this.target.host);
      this.socks.add(c); this.socks.add(s);
      const drop = () => { this.socks.delete(c); this.socks.delete(s); c.destroy(); s.destroy(); };
      c.on('error', drop); s.on('error', drop); c.on('close', drop); s.on('close', drop);
      c.pipe(s); s.pipe(c);
    });
    await new Promise(r => this.srv.listen(0, '127.0.0.1', r));
    this.port = this.srv.address().port;
  }
  /** cut drops every open connection at the TCP level (no WebSocket close). */
  cut() { const n = this.socks.size; for (const s of this.socks) s.resetAndDestroy ? s.resetAndDestroy() : s.destroy(); this.socks.clear(); return n / 2; }
  close() { this.cut(); this.srv.close(); }
}

/**
 * startServer starts a messenger server (its log in artifacts/NAME.log).
 * extra adds flags; ready, a regular expression, also waits for a line of
 * its log (with -log-level info, e.g. /bot signed in/).
 */
export async function startServer(relayPort, name = 'server', { extra = [], ready = null } = {}) {
  const data = fs.mkdtempSync(path.join(os.tmpdir(), 'messenger-web-'));
  const args = ['-addr', '127.0.0.1:0', '-data', data, '-register-per-addr', '1000', '-handshake-rate', 'off',
    '-identity-bits', '2048', '-log-level', 'warn', '-origins', `http://127.0.0.1:${relayPort}`, ...extra];
  const proc = spawn(env.MESSENGER_BIN, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '', errs = '';
  const log = fs.createWriteStream(path.join(artifacts, name + '.log'));
  proc.stderr.pipe(log);
  const info = await new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('server did not start: ' + out)), 90000);
    const check = () => {
      const a = /listening on (\S+)/.exec(out), f = /identity fingerprint (\S+)/.exec(out);
      if (a && f && (!ready || ready.test(errs))) { clearTimeout(t); resolve({ addr: a[1], fingerprint: f[1] }); }
    };
    proc.stdout.on('data', d => { out += d; check(); });
    proc.stderr.on('data', d => { if (ready && !ready.test(errs)) { errs += d; check(); } });
    proc.on('exit', c => reject(new Error(`server exited ${c}: ${out}`)));
  });
  return { proc, data, ...info };
}

async function main() {
  const filter = process.argv[2] || '';
  const relay = new Relay({ host: '127.0.0.1', port: 0 });
  // The relay needs the server's port and the server the relay's origin: reserve the relay first.
  await relay.listen();
  const server = await startServer(relay.port);
  const [host, port] = server.addr.split(':');
  relay.target = { host, port: Number(port) };
  const browser = await chromium.launch({
    executablePath: env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--host-resolver-rules=MAP insecure.test 127.0.0.1', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const ctx = {
    root, artifacts, browser, relay, server,
    base: `http://${server.addr}`,
    relayBase: `http://127.0.0.1:${relay.port}`,
    chatBin: env.CHAT_BIN,
    startServer: (name, opts) => startServer(relay.port, name, opts),
  };
  let failed = 0, ran = 0;
  for (const [name, fn] of Object.entries(scenarios)) {
    if (filter && !name.includes(filter)) continue;
    ran++;
    const t0 = Date.now();
    try {
      await fn(ctx);
      for (const c of browser.contexts()) await c.close();
      console.log(`ok   ${name} (${((Date.now() - t0) / 1000).toFixed(1)}s)`);
    } catch (e) {
      failed++;
      console.log(`FAIL ${name}: ${e && e.stack || e}`);
      let i = 0;
      for (const c of browser.contexts()) for (const pg of c.pages()) {
        const f = path.join(artifacts, `FAIL-${name}-${i++}.png`);
        try { await pg.screenshot({ path: f }); console.log(`     screenshot ${f}`); } catch { /* closed */ }
      }
      for (const c of browser.contexts()) await c.close().catch(() => {});
    }
  }
  await browser.close();
  relay.close();
  server.proc.kill('SIGTERM');
  fs.rmSync(server.data, { recursive: true, force: true });
  console.log(`${ran - failed}/${ran} browser scenarios passed; artifacts in ${artifacts}`);
  process.exit(failed || !ran ? 1 : 0);
}

main().catch(e => { console.error(e); process.exit(2); });
