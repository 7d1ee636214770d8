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
