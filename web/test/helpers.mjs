// Helpers of the browser scenarios.
import path from 'node:path';

export const T = 90000; // generous: the machine may be loaded (never a timing assertion)

export function assert(cond, msg) { if (!cond) throw new Error('assertion failed: ' + msg); }

/** person opens a fresh browser context (its own profile storage) on url. */
export async function person(ctx, name, url = ctx.base, opts = {}) {
  const context = await ctx.browser.newContext({ viewport: opts.viewport || { width: 1100, height: 760 } });
  const page = await context.newPage();
  page.setDefaultTimeout(T);
  const errors = [];
  page.on('pageerror', e => errors.push(String(e)));
  page.on('console', m => { if (m.type() === 'error') errors.push(m.text()); });
  await page.goto(url + '/');
  return { name, context, page, errors };
}

export async function register(p, user, password = 'correct horse battery') {
  const { page } = p;
  await page.click('#tab-register');
  await page.fill('#reg-user', user);
  await page.fill('#reg-password', password);
  await page.fill('#reg-password2', password);
  await page.click('#register-form button[type=submit]');
  await page.waitForSelector('#chat:not([hidden])');
  await waitOnline(p);
}

export async function signIn(p, user, password = 'correct horse battery') {
  const { page } = p;
  await page.fill('#login-user', user);
  await page.fill('#login-password', password);
  await page.click('#login-form button[type=submit]');
  await page.waitForSelector('#chat:not([hidden])');
  await waitOnline(p);
}

export async function waitOnline(p) { await p.page.waitForSelector('#status[data-status=online]'); }

export async function joinRoom(p, room) {
  await p.page.fill('#join-name', room);
  await p.page.press('#join-name', 'Enter');
  await p.page.waitForFunction(r => document.getElementById('pane-title').textContent === '#' + r, room);
}

export async function openDM(p, peer) {
  await p.page.fill('#conv-user', peer);
  await p.page.press('#conv-user', 'Enter');
  await p.page.waitForFunction(u => document.getElementById('pane-title').textContent.startsWith(u + ' '), peer);
}

export async function say(p, text) {
  await p.page.fill('#text', text);
  await p.page.press('#text', 'Enter');
  await waitText(p, text, { sent: true });
}

/** waitText waits until a (sent: acknowledged) message with exactly text is in the log. */
export async function waitText(p, text, { sent = false } = {}) {
  await p.page.waitForFunction(([t, sent]) => [...document.querySelectorAll('#log li.msg')].some(li => li.querySelector('.body').textContent === t && (!sent || !li.classList.contains('pending'))), [text, sent]);
}

/** bodies lists the message texts in the log, in order. */
export async function bodies(p) {
  return p.page.$$eval('#log li.msg .body', els => els.map(e => e.textContent));
}

export async function shot(ctx, p, name) {
  await p.page.screenshot({ path: path.join(ctx.artifacts, name + '.png') });
}

export function noErrors(...ps) {
  for (const p of ps) assert(p.errors.length === 0, `${p.name}: page errors: ${p.errors.join(' | ')}`);
}
