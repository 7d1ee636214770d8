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
