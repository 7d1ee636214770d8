// The page: sign-in, rooms, direct conversations. Everything the person
// or the server typed is put on the page as text, never as markup.
import { Client, PinChanged, explain } from './client.js';
import { normalizeFingerprint } from './protocol.js';

const $ = id => document.getElementById(id);
const el = (tag, props = {}, ...kids) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === 'class') e.className = v; else if (k === 'text') e.textContent = v; else if (k.startsWith('on')) e.addEventListener(k.slice(2), v); else if (v !== undefined && v !== null && v !== false) e.setAttribute(k, v === true ? '' : v);
  }
  for (const k of kids) if (k) e.append(k);
  return e;
};
const show = (id, on = true) => { $(id).hidden = !on; };
const timeOf = ts => (ts && isFinite(ts) ? new Date(ts) : null);

function start() {
  if (!window.isSecureContext || !window.crypto || !crypto.subtle) {
    $('insecure-host').textContent = location.host;
    show('insecure');
    return;
  }
  const client = new Client();
  const ui = new UI(client);
  ui.boot();
}

class UI {
  constructor(client) {
    this.c = client;
    this.view = null;
    this.problems = [];
  }

  async boot() {
    const c = this.c;
    c.addEventListener('status', e => this.onStatus(e.detail));
    c.addEventListener('rooms', () => this.renderLists());
    c.addEventListener('room', e => { if (this.view && this.view.kind === 'room' && this.view.name === e.detail.room) this.renderLog(e.detail); });
    c.addEventListener('conv', e => { if (this.view && this.view.kind === 'conv' && this.view.name === e.detail.peer) { this.renderLog(e.detail); this.renderWarning(); } this.renderLists(); });
    c.addEventListener('problem', e => this.problem(e.detail.message));
    c.addEventListener('mention', e => this.onMention(e.detail));
    c.addEventListener('bots', () => this.renderBotNote());
    c.addEventListener('keychange', e => this.onKeyChange(e.detail));
    c.addEventListener('pinchange', e => this.onPinChange(e.detail));
    c.addEventListener('signedout', e => { this.showAuth(); $('auth-error').textContent = e.detail.reason; });
    this.wireAuth(); this.wireChat();
    document.addEventListener('visibilitychange', () => this.markRead());
    window.addEventListener('hashchange', () => this.route());
    $('pin-current').textContent = (await c.pinned()) ? `Pinned now: ${await c.pinned()}` : 'No fingerprint pinned yet for this server.';
    const pin = new URLSearchParams(location.search).get('pin');
    if (pin) { try { await c.setPin(pin); } catch (e) { this.problem('The fingerprint in the address is not valid: ' + e.message); } }
    let resumed = false;
    try { resumed = await c.resume(); } catch (e) { if (!(e instanceof PinChanged)) this.problem(explain(e)); }
    if (resumed && c.user) this.showChat(); else if (!c.stopped || !c.user) this.showAuth();
  }

  // ---- sign-in ----

  wireAuth() {
    const tabs = [$('tab-login'), $('tab-register')];
    const select = t => {
      for (const x of tabs) { const on = x === t; x.setAttribute('aria-selected', on); x.tabIndex = on ? 0 : -1; $(x.getAttribute('aria-controls')).hidden = !on; }
      t.focus();
    };
    tabs.forEach((t, i) => {
      t.addEventListener('click', () => select(t));
      t.addEventListener('keydown', e => { if (e.key === 'ArrowRight' || e.key === 'ArrowLeft') { e.preventDefault(); select(tabs[(i + 1) % 2]); } });
    });
    $('login-form').addEventListener('submit', e => { e.preventDefault(); this.signIn(false); });
    $('register-form').addEventListener('submit', e => { e.preventDefault(); this.signIn(true); });
    $('pin-save').addEventListener('click', async () => {
      const f = normalizeFingerprint($('pin-input').value);
      if (!f) { $('auth-error').textContent = 'A fingerprint is 64 hexadecimal digits.'; return; }
      await this.c.setPin(f);
      $('pin-current').textContent = `Pinned now: ${f}`;
      $('auth-error').textContent = '';
    });
    $('pin-confirm').addEventListener('change', () => { $('pin-accept').disabled = !$('pin-confirm').checked; });
    $('pin-accept').addEventListener('click', async () => {
      await this.c.setPin(this.pinChange.presented);
      show('pin-dialog', false);
      location.reload();
    });
  }

  async signIn(register) {
    const f = register ? $('register-form') : $('login-form');
    const user = f.user.value.trim().toLowerCase(), password = f.password.value;
    const err = $('auth-error');
    err.textContent = '';
    if (register && password !== f.password2.value) { err.textContent = 'The two passwords differ.'; return; }
    const btn = f.querySelector('button[type=submit]');
    btn.disabled = true;
    const label = btn.textContent;
    btn.textContent = register ? 'Creating keys…' : 'Signing in…';
    try {
      this.c.stopped = false;
      if (register) await this.c.register(user, password); else await this.c.login(user, password);
      f.reset();
      this.showChat();
    } catch (e) {
      if (e instanceof PinChanged) this.onPinChange(e); else err.textContent = explain(e);
    } finally { btn.disabled = false; btn.textContent = label; }
  }

  onPinChange(e) {
    this.pinChange = e;
    $('pin-host').textContent = e.host; $('pin-old').textContent = e.pinned; $('pin-new').textContent = e.presented;
    show('auth', false); show('chat', false); show('pin-dialog');
    $('pin-confirm').focus();
  }

  showAuth() { show('chat', false); show('auth'); $('login-user').focus(); }
  showChat() {
    show('auth', false); show('chat');
    $('whoami').textContent = `Signed in as ${this.c.user}`;
    this.renderLists();
    this.route();
  }

  // ---- the chat screen ----

  wireChat() {
    $('signout').addEventListener('click', async () => { await this.c.signOut(); location.hash = ''; location.reload(); });
    $('join-form').addEventListener('submit', async e => {
      e.preventDefault();
      const name = $('join-name').value.trim().toLowerCase();
      try { await this.c.joinRoom(name); $('join-name').value = ''; location.hash = '#room/' + encodeURIComponent(name); } catch (x) { this.problem(`Could not join ${name}: ${explain(x)}`); }
    });
    $('conv-form').addEventListener('submit', async e => {
      e.preventDefault();
      const peer = $('conv-user').value.trim().toLowerCase();
      try { await this.c.openConversation(peer); $('conv-user').value = ''; location.hash = '#dm/' + encodeURIComponent(peer); } catch (x) { this.problem(`Could not open a conversation with ${peer}: ${explain(x)}`); }
    });
    $('composer').addEventListener('submit', e => { e.preventDefault(); this.send(); });
    $('text').addEventListener('keydown', e => { if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) { e.preventDefault(); this.send(); } });
    $('log').addEventListener('scroll', () => { if ($('log').scrollTop < 40) this.older(); });
    $('log').addEventListener('keydown', e => { if (e.key === 'Home' || e.key === 'PageUp') this.older(); });
    $('members-btn').addEventListener('click', () => this.toggle('members-btn', 'members'));
    $('safety-btn').addEventListener('click', async () => { if (this.toggle('safety-btn', 'safety')) await this.renderSafety(); });
    $('safety-accept').addEventListener('click', async () => {
      const peer = this.view.name;
      for (const u of [...this.c.conv(peer).unverified]) await this.c.acceptDevices(peer, u);
      await this.renderSafety(); this.renderWarning(); this.renderLog({});
    });
    $('leave-btn').addEventListener('click', async () => {
      const name = this.view.name;
      try { await this.c.leaveRoom(name); location.hash = ''; } catch (x) { this.problem(`Could not leave ${name}: ${explain(x)}`); }
    });
  }

  toggle(btnId, panelId) {
    const open = $(panelId).hidden;
    $(panelId).hidden = !open; $(btnId).setAttribute('aria-expanded', open);
    return open;
  }

  async route() {
    if (!this.c.user) return;
    const m = /^#(room|dm)\/(.+)$/.exec(location.hash);
    if (!m) { this.setView(null); return; }
    const name = decodeURIComponent(m[2]);
    const kind = m[1] === 'room' ? 'room' : 'conv';
    this.setView({ kind, name });
    try {
      if (kind === 'conv' && !this.c.conv(name).opened) await this.c.openConversation(name);
      if (kind === 'room' && !this.c.room(name).joined && this.c.status === 'online') await this.c.joinRoom(name);
    } catch (e) { this.problem(explain(e)); }
    this.renderLog({}); this.renderWarning();
  }

  setView(v) {
    this.view = v;
    this.c.viewing = v;
    $('members').hidden = true; $('safety').hidden = true;
    $('members-btn').setAttribute('aria-expanded', false); $('safety-btn').setAttribute('aria-expanded', false);
    $('pane-title').textContent = v ? (v.kind === 'room' ? `#${v.name}` : `${v.name} (end-to-end encrypted)`) : 'Welcome';
    show('members-btn', v && v.kind === 'room'); show('leave-btn', v && v.kind === 'room'); show('safety-btn', v && v.kind === 'conv');
    show('composer', !!v); show('empty', !v);
    $('text').setAttribute('aria-label', v ? (v.kind === 'room' ? `Message to #${v.name}` : `Message to ${v.name}`) : 'Message');
    $('log-list').replaceChildren();
    this.renderLists();
  }

  renderLists() {
    if (!this.c.user) return;
    const item = (kind, name, label, unread) => {
      const current = this.view && this.view.kind === kind && this.view.name === name;
      const b = el('button', { type: 'button', 'aria-current': current ? 'true' : undefined, onclick: () => { location.hash = (kind === 'room' ? '#room/' : '#dm/') + encodeURIComponent(name); } },
        el('span', { text: label }),
        unread ? el('span', { class: 'badge' }, String(unread), el('span', { class: 'sr-only', text: ' unread' })) : null);
      return el('li', {}, b);
    };
    $('room-list').replaceChildren(...[...this.c.rooms.values()].filter(r => r.joined || this.c.savedRooms.includes(r.name)).sort((a, b) => a.name.localeCompare(b.name)).map(r => item('room', r.name, '#' + r.name, r.unread)));
    $('conv-list').replaceChildren(...[...this.c.convs.values()].sort((a, b) => a.peer.localeCompare(b.peer)).map(cv => item('conv', cv.peer, cv.peer + (cv.unverified.size ? ' ⚠' : ''), cv.unread)));
    const total = [...this.c.rooms.values(), ...this.c.convs.values()].reduce((n, x) => n + (x.unread || 0), 0);
    document.title = total ? `(${total}) Messenger` : 'Messenger';
  }

  renderMembers() {
    if (!this.view || this.view.kind !== 'room') return;
    const r = this.c.room(this.view.name);
    const names = [...new Set(r.members)];
    $('members').replaceChildren(el('h3', { text: `Online in #${r.name}: ${names.length}` }), el('ul', {}, ...names.map(n => el('li', { text: n }))));
  }

  /** renderLog redraws the message list, keeping the reader's place. */
  renderLog(detail) {
    if (!this.view) return;
    const log = $('log');
    const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 60;
    const fromBottom = log.scrollHeight - log.scrollTop;
    const msgs = this.view.kind === 'room' ? this.c.roomMessages(this.view.name) : this.c.convMessages(this.view.name);
    const more = this.view.kind === 'room' ? this.c.room(this.view.name).more : this.c.conv(this.view.name).more;
    const items = msgs.map(m => this.item(m));
    if (more) items.unshift(el('li', { class: 'meta' }, el('button', { type: 'button', class: 'link', text: 'Load older messages', onclick: () => this.older() })));
    else items.unshift(el('li', { class: 'meta', text: 'Beginning of the history.' }));
    $('log-list').replaceChildren(...items);
    if (detail && detail.older) log.scrollTop = log.scrollHeight - fromBottom; else if (atBottom || (detail && detail.sent)) log.scrollTop = log.scrollHeight;
    if (this.view.kind === 'room') this.renderMembers();
    this.renderBotNote();
    this.markRead();
  }

  item(m) {
    const conv = this.view.kind === 'conv';
    const body = conv ? m.text : m.body;
    const cls = ['msg'];
    const tags = [];
    if (m.pending) { cls.push('pending'); tags.push('sending…'); }
    if (m.failed) { cls.push('failed'); }
    if (conv && m.verified === false && !m.mine && !m.failed) { cls.push('unverified'); tags.push('UNVERIFIED'); }
    if (m.live) { cls.push('live'); tags.push(m.stopping ? 'stopping…' : 'answering…'); }
    if (m.stream && m.live === false && m.reason && m.reason !== 'done') tags.push(m.reason === 'stop' ? 'stopped' : m.reason);
    const t = timeOf(m.ts);
    const li = el('li', { class: cls.join(' '), 'data-seq': isFinite(m.seq) ? m.seq : undefined },
      el('div', { class: 'meta' },
        el('span', { class: 'from', text: m.from || '' }),
        t ? el('time', { datetime: t.toISOString(), text: t.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' }) }) : null,
        ...tags.map(x => el('span', { class: 'tag', text: x }))),
      el('p', { class: 'body', text: m.failed ? `This message could not be opened (${m.failed}) and is not shown.` : body }));
    if (m.live && m.stream && !m.stopping) {
      li.append(el('button', { type: 'button', class: 'stop', text: 'Stop', 'aria-label': `Stop ${m.from}'s answer`, onclick: () => this.stop(m.stream) }));
    }
    return li;
  }

  async stop(stream) {
    try {
      if (this.view.kind === 'room') await this.c.stopStream(this.view.name, stream); else await this.c.stopConvStream(this.view.name, stream);
    } catch (e) { this.problem(explain(e)); }
  }

  async older() {
    if (!this.view) return;
    try {
      if (this.view.kind === 'room') await this.c.loadOlder(this.view.name); else await this.c.loadOlderConv(this.view.name);
    } catch (e) { this.problem(explain(e)); }
  }

  markRead() {
    if (!this.view || document.visibilityState !== 'visible') return;
    if (this.view.kind === 'room') this.c.markRead(this.view.name); else this.c.markConvRead(this.view.name);
  }

  async send() {
    const text = $('text').value;
    if (!text.trim() || !this.view) return;
    $('text').value = '';
    try {
      if (this.view.kind === 'room') await this.c.sendRoom(this.view.name, text); else await this.c.sendConv(this.view.name, text);
      this.renderLog({ sent: true });
    } catch (e) { this.problem(explain(e)); $('text').value = text; }
  }

  /**
   * renderBotNote says plainly, where a bot answers, that whoever runs it
   * reads what it is given (issue 16): in a direct conversation, all of it
   * (end to end stops at the bot); in a room, the messages it is sent as
   * context (the server can read a room anyway).
   */
  renderBotNote() {
    const n = $('bot-note');
    if (!this.view) { n.hidden = true; return; }
    let bots;
    if (this.view.kind === 'conv') bots = this.c.isBot(this.view.name) ? [this.view.name] : [];
    else {
      const r = this.c.room(this.view.name);
      bots = [...new Set([...r.members, ...[...r.streams.values()].map(s => s.from), ...[...r.msgs.values()].map(m => m.from)])].filter(u => this.c.isBot(u)).sort();
    }
    if (!bots.length) { n.hidden = true; return; }
    const who = bots.join(', ');
    n.replaceChildren(el('strong', { text: `${who} ${bots.length > 1 ? 'are bots' : 'is a bot'}. ` }),
      this.view.kind === 'conv'
        ? `This conversation is end to end between you and the bot, but whoever runs ${who} reads everything you send it (and, if the bot uses a hosted language model, so does whoever runs that model). Do not send it anything you would not tell them.`
        : `Whoever runs ${who} reads what this room says to it: the messages that mention it and the room's recent history it is given to answer (and, with a hosted language model, so does whoever runs that model).`);
    n.hidden = false;
  }

  /** onMention: someone wrote @you in a room you are not in (§8.6): say so, and offer to open it. */
  onMention(m) {
    const box = $('problems');
    const p = el('p', { class: 'info' },
      el('span', { text: `${m.from} mentioned you in #${m.room}.` }),
      el('button', { type: 'button', class: 'link', text: `Open #${m.room}`, onclick: async () => {
        p.remove();
        try { await this.c.joinRoom(m.room); location.hash = '#room/' + encodeURIComponent(m.room); } catch (x) { this.problem(`Could not join ${m.room}: ${explain(x)}`); }
      } }),
      el('button', { type: 'button', class: 'link', 'aria-label': 'Dismiss notice', text: '×', onclick: () => p.remove() }));
    box.append(p);
    while (box.children.length > 4) box.firstChild.remove();
    setTimeout(() => p.remove(), 60000);
  }

  renderWarning() {
    this.renderBotNote();
    const w = $('warning');
    if (!this.view || this.view.kind !== 'conv') { w.hidden = true; return; }
    const cv = this.c.conv(this.view.name);
    if (!cv.unverified.size) { w.hidden = true; $('safety-accept').hidden = true; return; }
    const who = [...cv.unverified].map(u => (u === this.c.user ? 'your own account' : u)).join(' and ');
    w.replaceChildren(el('strong', { text: 'Keys changed. ' }),
      `The devices of ${who} changed since you last verified them (a device was added, removed or re-keyed). Messages from new devices are marked UNVERIFIED. Compare the safety number before trusting them. `,
      el('button', { type: 'button', class: 'link', text: 'Compare the safety number', onclick: async () => { $('safety').hidden = false; $('safety-btn').setAttribute('aria-expanded', true); await this.renderSafety(); $('safety-number').focus(); } }));
    w.hidden = false;
    $('safety-accept').hidden = false;
  }

  async renderSafety() {
    const peer = this.view.name;
    $('safety-peer').textContent = peer;
    try {
      const n = await this.c.safetyNumber(peer);
      const g = n.split(' ');
      $('safety-number').textContent = [g.slice(0, 4), g.slice(4, 8), g.slice(8)].map(x => x.join(' ')).join('\n');
      $('safety-number').setAttribute('aria-label', `Safety number: ${n}`);
      $('safety-number').tabIndex = -1;
      $('safety-accept').hidden = !this.c.conv(peer).unverified.size;
    } catch (e) { $('safety-number').textContent = explain(e); }
  }

  onKeyChange(d) {
    if (d.conv) { this.problem(`${d.user === this.c.user ? 'Your' : d.user + '’s'} devices changed: compare the safety number in the conversation with ${d.conv}.`); this.renderWarning(); this.renderLists(); return; }
    if (d.user && d.event) this.problem(`${d.user}’s keys changed (${d.event === 'device_added' ? 'device added' : 'device removed'}): compare safety numbers before trusting.`);
  }

  onStatus({ status, detail }) {
    const s = $('status');
    const text = { online: 'Connected', connecting: detail && detail.retryIn ? `Reconnecting (next try in ${Math.round(detail.retryIn / 100) / 10} s)…` : 'Connecting…', offline: 'Offline' }[status];
    s.textContent = text;
    s.dataset.status = status;
    if (status === 'online' && this.c.conn) { s.dataset.resumed = this.c.conn.resumed; s.dataset.session = this.c.conn.session.id; }
    if (status === 'online') { this.renderLists(); if (this.view) this.renderLog({}); }
  }

  problem(message) {
    const box = $('problems');
    const p = el('p', {}, el('span', { text: message }), el('button', { type: 'button', class: 'link', 'aria-label': 'Dismiss notice', text: '×', onclick: () => p.remove() }));
    box.append(p);
    while (box.children.length > 4) box.firstChild.remove();
    setTimeout(() => p.remove(), 15000);
  }
}

start();
