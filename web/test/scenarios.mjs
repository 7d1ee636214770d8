// The browser scenarios. Each takes the context of run.mjs and throws on failure.
import { check, loadVectors } from './golden.mjs';
import { assert, bodies, joinRoom, noErrors, openDM, person, register, say, shot, signIn, waitOnline, waitText } from './helpers.mjs';

const uniq = p => p + Math.random().toString(36).slice(2, 8);

export const scenarios = {
  async golden(ctx) {
    const page = await ctx.browser.newPage();
    await page.goto(ctx.base + '/');
    const r = await page.evaluate(check, loadVectors(ctx.root));
    await page.close();
    if (r.bad.length) throw new Error(`${r.bad.length} of ${r.checks} golden checks failed:\n  ` + r.bad.join('\n  '));
    if (r.checks < 180) throw new Error(`only ${r.checks} golden checks ran`);
  },

  async aliceAndBob(ctx) {
    const a = uniq('alice'), b = uniq('bob');
    const alice = await person(ctx, 'alice'), bob = await person(ctx, 'bob');
    await shot(ctx, alice, 'sign-in');
    await Promise.all([register(alice, a), register(bob, b)]);
    // Direct conversation, both ways.
    await openDM(alice, b);
    await say(alice, `hello ${b}, it is ${a}`);
    await bob.page.waitForSelector(`#conv-list button:has-text("${a}") .badge`);
    await bob.page.click(`#conv-list button:has-text("${a}")`);
    await waitText(bob, `hello ${b}, it is ${a}`);
    await say(bob, 'hi alice 👋 <b>not bold</b>');
    await waitText(alice, 'hi alice 👋 <b>not bold</b>');
    assert(await alice.page.$$eval('#log b', x => x.length) === 0, 'message text is not markup');
    // Safety numbers agree.
    const safety = async p => { await p.page.click('#safety-btn'); await p.page.waitForFunction(() => /^\d{5}( \d{5}){3}\n/.test(document.getElementById('safety-number').textContent)); return p.page.textContent('#safety-number'); };
    const [sa, sb] = await Promise.all([safety(alice), safety(bob)]);
    assert(sa === sb, `safety numbers differ: ${sa} / ${sb}`);
    assert(sa.replace(/\s+/g, '').length === 60, 'sixty digits');
    await shot(ctx, alice, 'conversation-safety-number');
    // A room.
    const room = uniq('general');
    await joinRoom(alice, room); await joinRoom(bob, room);
    await say(alice, 'room hello'); await waitText(bob, 'room hello');
    await say(bob, 'room reply'); await waitText(alice, 'room reply');
    await alice.page.click('#members-btn');
    await alice.page.waitForFunction(b => document.getElementById('members').textContent.includes(b), b);
    await shot(ctx, alice, 'room');
    noErrors(alice, bob);
    await alice.context.close(); await bob.context.close();
  },
};

Object.assign(scenarios, {
  /** A reload in the middle of a conversation resumes the session and shows everything once. */
  async reloadResumes(ctx) {
    const a = uniq('alice'), b = uniq('bob'), room = uniq('lobby');
    const alice = await person(ctx, 'alice'), bob = await person(ctx, 'bob');
    await Promise.all([register(alice, a), register(bob, b)]);
    await joinRoom(alice, room); await joinRoom(bob, room);
    await say(alice, 'r1'); await say(bob, 'r2');
    await openDM(alice, b);
    await say(alice, 'd1');
    await openDM(bob, a); await waitText(bob, 'd1');
    await say(bob, 'd2'); await waitText(alice, 'd2');
    const session = await alice.page.getAttribute('#status', 'data-session');
    await alice.page.reload();
    await alice.page.waitForSelector('#chat:not([hidden])');
    await waitOnline(alice);
    assert(await alice.page.getAttribute('#status', 'data-resumed') === 'true', 'the reload resumed the session');
    assert(await alice.page.getAttribute('#status', 'data-session') === session, 'the same session');
    await waitText(alice, 'd2');
    assert((await bodies(alice)).join('|') === 'd1|d2', 'the conversation once, in order: ' + (await bodies(alice)).join('|'));
    await say(bob, 'd3'); await waitText(alice, 'd3');
    await say(alice, 'd4'); await waitText(bob, 'd4');
    assert((await bodies(alice)).join('|') === 'd1|d2|d3|d4', 'after the reload: ' + (await bodies(alice)).join('|'));
    assert((await bodies(bob)).join('|') === 'd1|d2|d3|d4', 'bob: ' + (await bodies(bob)).join('|'));
    await alice.page.click(`#room-list button:has-text("${room}")`);
    await waitText(alice, 'r2');
    await bob.page.click(`#room-list button:has-text("${room}")`);
    await say(bob, 'r3');
    await waitText(alice, 'r3');
    assert((await bodies(alice)).join('|') === 'r1|r2|r3', 'room after the reload: ' + (await bodies(alice)).join('|'));
    noErrors(alice, bob);
    await alice.context.close(); await bob.context.close();
  },

  /** The network drops (TCP cut under the WebSocket): reconnect, resume, nothing lost or doubled. */
  async cutReconnects(ctx) {
    const a = uniq('alice'), b = uniq('bob'), room = uniq('cut');
    const alice = await person(ctx, 'alice', ctx.relayBase), bob = await person(ctx, 'bob');
    await Promise.all([register(alice, a), register(bob, b)]);
    await joinRoom(alice, room); await joinRoom(bob, room);
    await say(alice, 'before 1'); await waitText(bob, 'before 1');
    for (let round = 0; round < 2; round++) {
      const cut = ctx.relay.cut();
      assert(cut >= 1, 'the relay had a connection to cut');
      // Bob talks while Alice is cut off; Alice types while disconnected.
      for (let i = 0; i < 3; i++) await say(bob, `while cut ${round}.${i}`);
      await alice.page.fill('#text', `alice offline ${round}`);
      await alice.page.press('#text', 'Enter');
      await waitOnline(alice);
      assert(await alice.page.getAttribute('#status', 'data-resumed') === 'true', 'the reconnect resumed the session');
      await waitText(alice, `while cut ${round}.2`);
      await waitText(alice, `alice offline ${round}`, { sent: true });
      await waitText(bob, `alice offline ${round}`);
    }
    await say(bob, 'after'); await waitText(alice, 'after');
    const want = ['before 1', 'while cut 0.0', 'while cut 0.1', 'while cut 0.2', 'alice offline 0', 'while cut 1.0', 'while cut 1.1', 'while cut 1.2', 'alice offline 1', 'after'];
    for (const p of [alice, bob]) {
      const got = await bodies(p);
      assert(got.length === want.length && new Set(got).size === got.length, `${p.name}: no loss, no duplicate: ${got.join('|')}`);
      for (const w of want) assert(got.includes(w), `${p.name} has ${w}`);
    }
    // Each person's own order holds (the interleaving of the two is the server's).
    const bobs = (await bodies(alice)).filter(x => x.startsWith('while'));
    assert(bobs.join('|') === want.filter(x => x.startsWith('while')).join('|'), 'bob\'s messages in order: ' + bobs.join('|'));
    noErrors(bob);
    await alice.context.close(); await bob.context.close();
  },
});

import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';

/** chat runs the command-line client (cmd/chat) against the test server. */
function chat(ctx, home, args, { timeout = 120000 } = {}) {
  return new Promise((resolve, reject) => {
    execFile(ctx.chatBin, args, { env: { ...process.env, MESSENGER_CHAT_HOME: home, MESSENGER_SERVER: `ws://${ctx.server.addr}/ws` }, timeout }, (err, stdout, stderr) => {
      if (err) reject(new Error(`chat ${args.join(' ')}: ${err.message}\n${stdout}\n${stderr}`)); else resolve(stdout);
    });
  });
}

async function axe(ctx, p, screen) {
  const require = createRequire(import.meta.url);
  const src = fs.readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
  await p.page.evaluate(src); // evaluated by the driver: the page's CSP stays as served
  const r = await p.page.evaluate(async () => {
    const res = await window.axe.run(document, { resultTypes: ['violations'] });
    return res.violations.map(v => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map(n => n.target.join(' ')).slice(0, 3) }));
  });
  fs.writeFileSync(path.join(ctx.artifacts, `axe-${screen}.json`), JSON.stringify(r, null, 2));
  const serious = r.filter(v => v.impact === 'serious' || v.impact === 'critical');
  assert(serious.length === 0, `axe on ${screen}: ${JSON.stringify(serious)}`);
  return r.length;
}

Object.assign(scenarios, {
  /** The browser and cmd/chat talk both ways, in a room and end to end. */
  async browserAndCLI(ctx) {
    assert(ctx.chatBin, 'CHAT_BIN is set');
    const a = uniq('alice'), c = uniq('carol'), room = uniq('mixed');
    const home = fs.mkdtempSync(path.join(os.tmpdir(), 'chat-home-'));
    const pw = path.join(home, 'pw');
    fs.writeFileSync(pw, 'correct horse battery\n', { mode: 0o600 });
    const alice = await person(ctx, 'alice');
    await Promise.all([register(alice, a), chat(ctx, home, ['register', '-user', c, '-password-file', pw])]);
    // Browser to CLI, end to end.
    await openDM(alice, c);
    await say(alice, 'from the browser');
    let out = await chat(ctx, home, ['-user', c, '-to', a, '-json', '-listen', '2s']);
    const lines = out.trim().split('\n').filter(Boolean).map(l => JSON.parse(l)).filter(l => l.t === 'conv_text');
    assert(lines.some(l => l.text === 'from the browser' && l.from === a), 'the CLI opened the browser\'s record: ' + out);
    // CLI to browser.
    await chat(ctx, home, ['-user', c, '-to', a, '-send', 'from the CLI']);
    await waitText(alice, 'from the CLI');
    await say(alice, 'and back');
    out = await chat(ctx, home, ['-user', c, '-to', a, '-json', '-listen', '2s']);
    assert(out.includes('"text":"and back"'), 'the CLI got the second message: ' + out);
    // Safety numbers agree between the two implementations.
    const cli = (await chat(ctx, home, ['safety', '-user', c, a])).match(/\d{5}/g).join(' ');
    await alice.page.click('#safety-btn');
    await alice.page.waitForFunction(() => /\d{5}/.test(document.getElementById('safety-number').textContent));
    const web = (await alice.page.textContent('#safety-number')).match(/\d{5}/g).join(' ');
    assert(cli === web, `safety numbers: CLI ${cli}, browser ${web}`);
    // A room.
    await joinRoom(alice, room);
    await chat(ctx, home, ['-user', c, '-room', room, '-send', 'cli in the room']);
    await waitText(alice, 'cli in the room');
    await say(alice, 'browser in the room');
    out = await chat(ctx, home, ['-user', c, '-room', room, '-json', '-listen', '2s']);
    assert(out.includes('browser in the room'), 'the CLI got the room message: ' + out);
    // The same account in a browser too: a second device of carol's. Alice
    // hears of it (key_change in the room they share), warns, and wraps the
    // next key to both of carol's devices; the CLI and the browser read it.
    const carolWeb = await person(ctx, 'carol-browser');
    await signIn(carolWeb, c);
    await carolWeb.page.waitForSelector(`#conv-list button:has-text("${a}")`);
    await alice.page.click(`#conv-list button:has-text("${c}")`);
    await alice.page.waitForSelector('#warning:not([hidden])');
    await say(alice, 'to both of your devices');
    // (Read positions are the account's: the CLI reads first, before the browser marks it read.)
    out = await chat(ctx, home, ['-user', c, '-to', a, '-json', '-listen', '2s']);
    assert(out.includes('"text":"to both of your devices"'), 'the CLI device reads it: ' + out);
    await carolWeb.page.click(`#conv-list button:has-text("${a}")`);
    await waitText(carolWeb, 'to both of your devices');
    await say(carolWeb, 'from my browser');
    await waitText(alice, 'from my browser');
    noErrors(alice, carolWeb);
    fs.rmSync(home, { recursive: true, force: true });
  },

  /** A contact's new device: a loud warning, UNVERIFIED messages, then verified after comparing. */
  async keyChangeWarning(ctx) {
    const a = uniq('alice'), b = uniq('bob');
    const alice = await person(ctx, 'alice'), bob = await person(ctx, 'bob');
    await Promise.all([register(alice, a), register(bob, b)]);
    await openDM(alice, b);
    await say(alice, 'first');
    // Bob signs in from another browser: a second device of his account.
    const bob2 = await person(ctx, 'bob-laptop');
    await signIn(bob2, b);
    await openDM(bob2, a);
    // (A new device cannot read what came before it: e2e.md §14.)
    await say(bob2, 'from my new laptop');
    await waitText(alice, 'from my new laptop');
    await alice.page.waitForSelector('#warning:not([hidden])');
    const warn = await alice.page.textContent('#warning');
    assert(/Keys changed/.test(warn), 'the warning says the keys changed: ' + warn);
    assert(await alice.page.$eval('#log li.unverified .body', e => e.textContent) === 'from my new laptop', 'the message is marked UNVERIFIED');
    await shot(ctx, alice, 'key-change-warning');
    await alice.page.click('#warning button');
    await alice.page.waitForSelector('#safety-accept:not([hidden])');
    await alice.page.click('#safety-accept');
    await alice.page.waitForSelector('#warning', { state: 'hidden' });
    assert(await alice.page.$$eval('#log li.unverified', x => x.length) === 0, 'verified after accepting');
    noErrors(alice, bob, bob2);
  },

  /** axe-core over the main screens, and screenshots of them (wide and phone-sized). */
  async accessibility(ctx) {
    const a = uniq('alice'), b = uniq('bob'), room = 'general';
    const alice = await person(ctx, 'alice'), bob = await person(ctx, 'bob');
    await axe(ctx, alice, 'sign-in');
    await alice.page.click('#tab-register');
    await axe(ctx, alice, 'register');
    await Promise.all([register(alice, a), register(bob, b)]);
    await joinRoom(alice, room); await joinRoom(bob, room);
    await say(alice, 'Morning! Anyone up for the review at ten?');
    await say(bob, 'Yes — I will bring the notes.');
    await alice.page.click('#members-btn');
    await axe(ctx, alice, 'room');
    await shot(ctx, alice, 'screen-room');
    await openDM(alice, b);
    await say(alice, 'This one is end to end: the server cannot read it.');
    await alice.page.click('#safety-btn');
    await alice.page.waitForFunction(() => /\d{5}/.test(document.getElementById('safety-number').textContent));
    await axe(ctx, alice, 'conversation');
    await shot(ctx, alice, 'screen-conversation');
    // Keyboard: the composer is reachable and sends with Enter.
    await alice.page.focus('#text');
    await alice.page.keyboard.type('typed with the keyboard');
    await alice.page.keyboard.press('Enter');
    await waitText(alice, 'typed with the keyboard', { sent: true });
    // A phone-sized screen.
    const phone = await person(ctx, 'phone', ctx.base, { viewport: { width: 390, height: 780 } });
    await signIn(phone, b);
    await phone.page.click(`#room-list button:has-text("${room}")`);
    await waitText(phone, 'Yes — I will bring the notes.');
    const overflow = await phone.page.evaluate(() => document.documentElement.scrollWidth > window.innerWidth + 1);
    assert(!overflow, 'no horizontal scrolling on a phone-sized screen');
    await axe(ctx, phone, 'phone-room');
    await shot(ctx, phone, 'screen-phone');
    noErrors(alice, bob, phone);
  },

  /**
   * Streamed answers as docs/protocol.md §8.6 has them, from a member
   * driven by hand: the page shows the growing text of the member who
   * sent the `start` only (another member's delta under the same id is
   * ignored), a Stop button whose `stop` the server relays to the producer
   * too, the stored answer once in place of the growing text (live, and
   * again from history after a reload, where it no longer names its
   * stream), and a `mention` from a room the reader is not in.
   */
  async streamedAnswer(ctx) {
    const a = uniq('alice'), room = uniq('bots'), quiet = uniq('quiet');
    const alice = await person(ctx, 'alice'), bot = await person(ctx, 'bot');
    await register(alice, a);
    await joinRoom(alice, room);
    await bot.page.evaluate(async ([users, room]) => {
      const { Client } = await import('/js/client.js');
      const c = new Client(), e = new Client();
      await c.register(users[0], 'correct horse battery');
      await e.register(users[1], 'correct horse battery');
      await c.joinRoom(room); await e.joinRoom(room);
      const stream = crypto.randomUUID();
      await c.request({ t: 'stream', room, stream, event: 'start' });
      window.bot = { c, e, stream, room };
    }, [[uniq('bot'), uniq('eve')], room]);
    const code = await bot.page.evaluate(async () => {
      const { c, e, stream, room } = window.bot;
      for (const body of ['The answer ', 'grows ']) await c.request({ t: 'stream', room, stream, event: 'delta', body });
      await e.request({ t: 'stream', room, stream, event: 'delta', body: 'INJECTED ' }); // not the producer: ignored
      await c.request({ t: 'stream', room, stream, event: 'delta', body: 'word by word' });
      try { await c.request({ t: 'stream', room, stream, event: 'delta', body: '' }); return 'accepted'; } catch (x) { return x.code; }
    });
    assert(code === 17, 'a delta without text is refused with bad_request: ' + code);
    await waitText(alice, 'The answer grows word by word');
    await alice.page.waitForSelector('#log li.live .tag:has-text("answering…")');
    await alice.page.click('#log li.live button.stop');
    await alice.page.waitForSelector('#log li.live .tag:has-text("stopping…")');
    // The server relays the stop to every member: the producer hears it.
    await bot.page.waitForFunction(() => { const { c, stream, room } = window.bot; const s = c.room(room).streams.get(stream); return s && s.stopping; });
    await bot.page.evaluate(async () => {
      const { c, stream, room } = window.bot;
      await c.request({ t: 'stream', room, stream, event: 'end', reason: 'stop' });
      await c.request({ t: 'send', room, body: 'The answer grows word by word [stopped]', mid: crypto.randomUUID(), stream });
    });
    await waitText(alice, 'The answer grows word by word [stopped]');
    await alice.page.waitForSelector('#log li.live', { state: 'detached' });
    const once = async () => {
      const got = await bodies(alice);
      assert(got.filter(x => x.startsWith('The answer grows')).length === 1 && !got.some(x => x.includes('INJECTED')), 'the answer once, without the other member\'s delta: ' + got.join('|'));
    };
    await once();
    // A mention from a room Alice is not in: a notice that opens it.
    const producer = await bot.page.evaluate(async ([quiet, who]) => {
      const { c } = window.bot;
      await c.joinRoom(quiet);
      await c.request({ t: 'send', room: quiet, body: `@${who} have a look`, mid: crypto.randomUUID() });
      return c.user;
    }, [quiet, a]);
    await alice.page.waitForSelector(`#problems p.info:has-text("${producer} mentioned you in #${quiet}")`);
    await alice.page.click(`#problems p.info button:has-text("Open #${quiet}")`);
    await alice.page.waitForFunction(r => document.getElementById('pane-title').textContent === '#' + r, quiet);
    await waitText(alice, `@${a} have a look`);
    // From history after a reload (no stream there): still once.
    await alice.page.reload();
    await alice.page.waitForSelector('#chat:not([hidden])');
    await waitOnline(alice);
    await alice.page.click(`#room-list button:has-text("${room}")`);
    await waitText(alice, 'The answer grows word by word [stopped]');
    await once();
    noErrors(alice);
  },
});

Object.assign(scenarios, {
  /** Every error code has its own plain message. */
  async errorMessages(ctx) {
    const page = await ctx.browser.newPage();
    await page.goto(ctx.base + '/');
    const r = await page.evaluate(async () => {
      const { CODES, ProtocolError } = await import('/js/protocol.js');
      const { MESSAGES, explain } = await import('/js/client.js');
      const missing = Object.values(CODES).filter(n => !MESSAGES[n]);
      const texts = Object.keys(CODES).map(n => explain(new ProtocolError(Number(n))));
      return { missing, distinct: new Set(texts).size, n: texts.length, unknown: explain(new ProtocolError(99, 'x')) };
    });
    await page.close();
    assert(r.missing.length === 0, 'codes without a message: ' + r.missing);
    assert(r.distinct === r.n, 'one message per code');
    assert(/code_99/.test(r.unknown), 'an unknown code is named: ' + r.unknown);
  },

  /** Opened over plain http from another host, the page says why it cannot run. */
  async insecureOrigin(ctx) {
    const port = ctx.server.addr.split(':')[1];
    const p = await person(ctx, 'visitor', `http://insecure.test:${port}`);
    await p.page.waitForSelector('#insecure:not([hidden])');
    const text = await p.page.textContent('#insecure');
    assert(text.includes('insecure.test') && /https/.test(text), 'the page explains: ' + text);
    assert(await p.page.isHidden('#auth'), 'no sign-in form');
    await shot(ctx, p, 'insecure-origin');
  },

  /** The server's identity key changes: the page stops with a blocking warning and sends nothing. */
  async pinChangeBlocks(ctx) {
    const a = uniq('alice');
    const alice = await person(ctx, 'alice', ctx.relayBase);
    await register(alice, a);
    const other = await ctx.startServer('impostor');
    const [host, port] = other.addr.split(':');
    const real = ctx.relay.target;
    ctx.relay.target = { host, port: Number(port) };
    try {
      ctx.relay.cut();
      await alice.page.waitForSelector('#pin-dialog:not([hidden])');
      const [oldFp, newFp] = [await alice.page.textContent('#pin-old'), await alice.page.textContent('#pin-new')];
      assert(oldFp === ctx.server.fingerprint && newFp === other.fingerprint, `the dialog shows both keys: ${oldFp} / ${newFp}`);
      assert(await alice.page.isHidden('#chat'), 'the chat is hidden behind the warning');
      assert(await alice.page.isDisabled('#pin-accept'), 'accepting needs the confirmation first');
      await axe(ctx, alice, 'pin-change');
      await shot(ctx, alice, 'pin-change');
      // A reload does not get past it either.
      await alice.page.reload();
      await alice.page.waitForSelector('#pin-dialog:not([hidden])');
    } finally {
      ctx.relay.target = real;
      other.proc.kill('SIGTERM');
      fs.rmSync(other.data, { recursive: true, force: true });
    }
  },
});

Object.assign(scenarios, {
  /** History loads as the reader scrolls up, a page at a time, each message once and in order. */
  async historyOnScroll(ctx) {
    const room = uniq('long'), n = 75;
    const writer = await person(ctx, 'writer');
    await writer.page.evaluate(async ([user, room, n]) => {
      const { Client } = await import('/js/client.js');
      const c = new Client();
      await c.register(user, 'correct horse battery');
      await c.joinRoom(room);
      for (let i = 1; i <= n; i++) {
        for (;;) {
          try { await c.request({ t: 'send', room, body: `line ${i}`, mid: crypto.randomUUID() }); break; } catch (e) {
            if (e.code !== 23) throw e; // rate_limited: wait and send again
            await new Promise(r => setTimeout(r, 500));
          }
        }
      }
    }, [uniq('writer'), room, n]);
    const reader = await person(ctx, 'reader');
    await register(reader, uniq('reader'));
    await joinRoom(reader, room);
    await waitText(reader, `line ${n}`);
    const first = await bodies(reader);
    assert(first.length < n && first[first.length - 1] === `line ${n}`, `one page first (${first.length})`);
    for (let i = 0; i < 10 && (await bodies(reader)).length < n; i++) {
      const k = (await bodies(reader)).length;
      await reader.page.$eval('#log', l => { l.scrollTop = 0; l.dispatchEvent(new Event('scroll')); });
      await reader.page.waitForFunction(k => document.querySelectorAll('#log li.msg').length > k, k);
    }
    const all = await bodies(reader);
    assert(all.length === n, `all ${n} after scrolling up: ${all.length}`);
    assert(all.every((b, i) => b === `line ${i + 1}`), 'in order, once each');
    await reader.page.waitForSelector('#log li.meta:has-text("Beginning of the history")');
    noErrors(reader);
  },
});

/** watchStream records, in the page, every text a growing answer shows (to see it grow). */
async function watchStream(p) {
  await p.page.evaluate(() => {
    window.seen = [];
    new MutationObserver(() => {
      const e = document.querySelector('#log li.live .body');
      if (e && e.textContent && window.seen[window.seen.length - 1] !== e.textContent) window.seen.push(e.textContent);
    }).observe(document.getElementById('log-list'), { childList: true, subtree: true, characterData: true });
  });
}

/** answers lists the bot's stored answers in the log (the offline responder labels each). */
async function answers(p) {
  return p.page.$$eval('#log li.msg:not(.live) .body', els => els.map(e => e.textContent).filter(t => t.startsWith('[offline responder')));
}

Object.assign(scenarios, {
  /**
   * Issue 15, a room with the bot: a server run with -bot bot (the offline
   * responder, paced slowly enough to watch and to stop). Alice mentions
   * it; both browsers see the answer grow, then the stored answer once.
   * Bob stops the next answer in the middle. A direct conversation with
   * the bot (end to end) gets an answer. Both places say plainly that
   * whoever runs the bot reads what is sent to it (issue 16).
   */
  async botRoom(ctx) {
    const srv = await ctx.startServer('bot-server', { extra: ['-bot', 'bot', '-bot-offline-delay', '400ms', '-log-level', 'info'], ready: /bot signed in/ });
    try {
      const base = `http://${srv.addr}`;
      const a = uniq('alice'), b = uniq('bob'), room = uniq('ask');
      const alice = await person(ctx, 'alice', base), bob = await person(ctx, 'bob', base);
      await Promise.all([register(alice, a), register(bob, b)]);
      await joinRoom(alice, room); await joinRoom(bob, room);
      await Promise.all([watchStream(alice), watchStream(bob)]);
      // The bot is not in the room: the server tells it of the mention, it joins and answers.
      await say(alice, '@bot hello');
      for (const p of [alice, bob]) {
        await p.page.waitForFunction(() => document.querySelectorAll('#log li.msg:not(.live) .body').length >= 2 && [...document.querySelectorAll('#log li.msg:not(.live) .body')].some(e => e.textContent.startsWith('[offline responder')));
        await p.page.waitForSelector('#log li.live', { state: 'detached' });
        const seen = await p.page.evaluate(() => window.seen);
        const got = await answers(p);
        assert(seen.length >= 3, `${p.name} saw the answer grow: ${JSON.stringify(seen)}`);
        assert(seen.every((t, i) => i === 0 || t.startsWith(seen[i - 1])), `${p.name}: each text extends the last: ${JSON.stringify(seen)}`);
        assert(got.length === 1, `${p.name}: the stored answer once: ${JSON.stringify(got)}`);
        assert(got[0].startsWith(seen[seen.length - 1].trim()) && got[0].includes(`You said: "${a}: @bot hello"`), `${p.name}: the stored answer is the streamed one: ${got[0]}`);
        const note = await p.page.textContent('#bot-note');
        assert(await p.page.isVisible('#bot-note') && /bot is a bot/.test(note) && /Whoever runs bot reads/.test(note), `${p.name}: the room says who reads what the bot gets: ${note}`);
      }
      // The next answer: shown live (screenshot, axe), then Bob stops it.
      await say(alice, '@bot please tell me a long story about a lighthouse keeper who collects the names of passing ships in a notebook');
      await alice.page.waitForSelector('#log li.live button.stop');
      await bob.page.waitForSelector('#log li.live button.stop');
      await alice.page.waitForFunction(() => document.querySelector('#log li.live .body').textContent.length > 140);
      await shot(ctx, alice, 'bot');
      await axe(ctx, alice, 'bot-room');
      await bob.page.click('#log li.live button.stop');
      for (const p of [alice, bob]) {
        await p.page.waitForSelector('#log li.live', { state: 'detached' });
        await p.page.waitForFunction(() => [...document.querySelectorAll('#log li.msg .body')].some(e => e.textContent.includes('stopped by a member')));
        const got = await answers(p);
        assert(got.length === 2 && got[1].includes(`stopped by a member (${b})`) && !got[1].includes('Start the bot with'), `${p.name}: the stopped answer, once, cut short: ${JSON.stringify(got)}`);
      }
      // A direct conversation with the bot, end to end.
      await openDM(alice, 'bot');
      await alice.page.waitForSelector('#bot-note:not([hidden])');
      const note = await alice.page.textContent('#bot-note');
      assert(/end to end/.test(note) && /whoever runs bot reads everything you send it/.test(note), 'the conversation says who reads it: ' + note);
      await watchStream(alice);
      await say(alice, 'hello bot, just between us');
      await alice.page.waitForFunction(() => [...document.querySelectorAll('#log li.msg:not(.live) .body')].some(e => e.textContent.startsWith('[offline responder')));
      await alice.page.waitForSelector('#log li.live', { state: 'detached' });
      const seen = await alice.page.evaluate(() => window.seen);
      const got = await answers(alice);
      assert(seen.length >= 2, 'the conversation answer grew: ' + JSON.stringify(seen));
      assert(got.length === 1 && got[0].includes('You said: "hello bot, just between us"'), 'the answer once: ' + JSON.stringify(got));
      await shot(ctx, alice, 'bot-conversation');
      noErrors(alice, bob);
    } finally {
      srv.proc.kill('SIGTERM');
      fs.rmSync(srv.data, { recursive: true, force: true });
    }
  },
});
