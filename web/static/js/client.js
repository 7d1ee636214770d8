// The messenger client behind the UI: one account on this browser, its
// connection (resumed after every drop), rooms with history and unread
// counts, direct end-to-end conversations, and streamed bot answers.
import { b64, hex, newUUID, unb64, uuidBytes, equal } from './bytes.js';
import { CODE, ProtocolError, codeName, normalizeFingerprint } from './protocol.js';
import { Connection, SessionKeyPool } from './session.js';
import * as acct from './accounts.js';
import * as E from './e2e.js';
import { store } from './store.js';

/** MESSAGES: what the person is told for each error code (§13.2). */
export const MESSAGES = {
  unexpected_message: 'The server sent something out of order; the connection was closed.',
  malformed: 'A message could not be decoded; the connection was closed.',
  unsupported_version: 'This server speaks another protocol version.',
  no_common_suite: 'This browser and the server share no cipher suite.',
  bad_signature: 'A signature did not verify: the server or a contact is not who it claims to be.',
  bad_finished: 'The secure handshake failed (keys did not match).',
  handshake_timeout: 'The secure handshake took too long. Retrying…',
  frame_too_large: 'A message was too large for the connection.',
  bad_record: 'A message was altered on the way; the connection was closed.',
  bad_sequence: 'A message was replayed, reordered or lost on the way; the connection was closed.',
  session_unknown: 'The session expired; a new one is started.',
  replayed_id: 'That request was already sent.',
  stale_timestamp: 'This computer’s clock is off by more than the server allows. Set the clock right and try again.',
  slow_consumer: 'The connection fell behind and was dropped. Reconnecting…',
  internal: 'The server failed. Try again.',
  bad_key: 'A key was refused.',
  bad_request: 'The server refused the request as invalid.',
  too_large: 'The message is too long.',
  unavailable: 'The server is temporarily unavailable. Try again shortly.',
  going_away: 'The server is restarting. Reconnecting…',
  session_ended: 'You signed out.',
  auth_failed: 'Wrong user name or password (or this device’s keys were removed).',
  rate_limited: 'Too many attempts; wait a moment and try again.',
  conflict: 'That name is taken (or someone else did the same thing first).',
  unauthenticated: 'Sign in first.',
  not_found: 'Not found.',
  session_revoked: 'Your password or devices changed elsewhere; signing in again with this device’s keys…',
  limit_reached: 'A server limit was reached (too many rooms or connections).',
};
export function explain(e) {
  if (e instanceof ProtocolError) return MESSAGES[codeName(e.code)] ? `${MESSAGES[codeName(e.code)]}${e.sealed && e.message && e.message !== codeName(e.code) ? ` (${e.message})` : ''}` : `Error ${codeName(e.code)}: ${e.message}`;
  if (e instanceof E.E2EError) return `A message could not be opened (${e.name}).`;
  return e && e.message ? e.message : String(e);
}

/** PinChanged: the server's identity key is not the pinned one. */
export class PinChanged extends ProtocolError {
  constructor(host, pinned, presented) { super(CODE.bad_signature, `the identity key of ${host} changed`); this.host = host; this.pinned = pinned; this.presented = presented; }
}

const sortSeq = (a, b) => a.seq - b.seq;

export class Client extends EventTarget {
  constructor({ url = defaultURL(), host = location.host } = {}) {
    super();
    this.url = url; this.host = host;
    this.keys = new SessionKeyPool(); // generated in the background, before it is needed
    this.status = 'offline';
    this.rooms = new Map(); this.convs = new Map();
    this.outbox = []; // room sends not yet acked: {room, mid, body}
    this.backoff = 0;
    this.bots = new Set(); // users seen producing streamed answers (§8.6), or whose device is named "bot"
    this.convQueue = Promise.resolve(); // conversation pushes, handled one at a time, in order
  }

  emit(type, detail) { this.dispatchEvent(new CustomEvent(type, { detail })); }
  setStatus(s, detail) { this.status = s; this.emit('status', { status: s, detail }); }
  report(e, context) { this.emit('problem', { error: e, message: explain(e), context }); }

  // ---- the server's identity (§4.5) ----

  async checkPin(fp) {
    const key = 'server-pin:' + this.host;
    const pinned = await store.get(key);
    if (!pinned) { await store.set(key, fp); return; }
    if (pinned !== fp) throw new PinChanged(this.host, pinned, fp);
  }
  async setPin(fp) {
    const f = normalizeFingerprint(fp);
    if (!f) throw new Error('a fingerprint is 64 hex digits');
    await store.set('server-pin:' + this.host, f);
  }
  async pinned() { return store.get('server-pin:' + this.host); }

  // ---- connecting ----

  async open(useTicket = true) {
    const ticket = useTicket && this.user ? await store.get('ticket:' + this.user) : null;
    const conn = await Connection.open({ url: this.url, keys: this.keys, ticket, checkPin: fp => this.checkPin(fp) });
    if (this.user) await store.set('ticket:' + this.user, conn.ticket);
    return conn;
  }

  attach(conn) {
    this.conn = conn;
    conn.addEventListener('message', ev => this.onPush(ev.detail));
    conn.addEventListener('close', ev => this.onClosed(conn, ev.detail));
  }

  /** register makes a new account with this browser as its first device. */
  async register(user, password, deviceName = 'browser') {
    const dev = await acct.generateDevice(user);
    const conn = await this.open(false);
    try {
      const r = await acct.register(conn, dev, user, password, deviceName);
      await this.signedIn(conn, dev, r, user);
    } catch (e) { conn.close(); throw e; }
  }

  /** login signs in with the password: with this browser's device, or adding a new one. */
  async login(user, password, deviceName = 'browser') {
    const saved = await store.get('device:' + user);
    let dev = saved ? await acct.restore(saved) : null;
    const conn = await this.open(false);
    try {
      let r;
      if (dev) r = await acct.login(conn, dev, user, password);
      else { dev = await acct.generateDevice(user); r = await acct.loginNewDevice(conn, dev, user, password, deviceName); }
      await this.signedIn(conn, dev, r, user);
    } catch (e) { conn.close(); throw e; }
  }

  /** resume signs in again as the last user of this browser (after a reload), if any. */
  async resume() {
    const user = await store.get('last-user');
    const saved = user && await store.get('device:' + user);
    if (!saved) return false;
    this.user = user; this.device = await acct.restore(saved);
    await this.loadLocal();
    await this.reconnect(true);
    return true;
  }

  async signedIn(conn, dev, authed, user) {
    this.user = user; this.device = dev;
    if (authed.device && authed.device !== dev.id) throw new Error('the server logged in another device');
    await store.set('device:' + user, acct.storable(dev));
    await store.set('last-user', user);
    await store.set('ticket:' + user, conn.ticket);
    await this.loadLocal();
    this.attach(conn);
    this.setStatus('online');
    await this.afterConnect();
  }

  async loadLocal() {
    this.savedRooms = (await store.get(`rooms:${this.user}`)) || [];
    this.bots = new Set((await store.get(`bots:${this.user}`)) || []);
  }

  /** isBot says whether user answers with a program (it streamed answers here, or a device of it is named "bot"). */
  isBot(user) { return this.bots.has(user); }
  noteBot(user) {
    if (!user || user === this.user || this.bots.has(user)) return;
    this.bots.add(user);
    if (this.user) store.set(`bots:${this.user}`, [...this.bots]);
    this.emit('bots', { user });
  }

  /** reconnect opens a connection (resuming the session when it can) and restores everything. */
  async reconnect(first = false) {
    if (this.stopped) return;
    this.setStatus('connecting');
    for (;;) {
      try {
        const conn = await this.open(true);
        if (!(conn.resumed && conn.session.user === this.user)) {
          try { await acct.auth(conn, this.device, this.user); } catch (e) {
            conn.close();
            if (e instanceof ProtocolError && e.code === CODE.auth_failed) { await this.forget(); this.emit('signedout', { reason: explain(e) }); return; }
            throw e;
          }
        }
        this.attach(conn);
        this.backoff = 0;
        this.setStatus('online');
        await this.afterConnect();
        return;
      } catch (e) {
        if (e instanceof PinChanged) { this.stopped = true; this.setStatus('offline'); this.emit('pinchange', e); return; }
        if (e instanceof ProtocolError && e.code === CODE.session_revoked) await store.del('ticket:' + this.user);
        this.report(e, 'connect');
        this.backoff = Math.min(10000, this.backoff ? this.backoff * 2 : 500);
        this.setStatus('connecting', { retryIn: this.backoff });
        await new Promise(r => setTimeout(r, this.backoff));
        if (this.stopped) return;
      }
    }
  }

  onClosed(conn, err) {
    if (conn !== this.conn) return;
    this.conn = null;
    for (const r of this.rooms.values()) r.joined = false;
    // Streams are not stored (§8.6): what was missed of one cannot be
    // fetched, and its final message comes back through history, where it
    // no longer names its stream. Drop them; the stored answer replaces them.
    for (const r of this.rooms.values()) r.streams.clear();
    for (const cv of this.convs.values()) cv.streams.clear();
    if (this.stopped) { this.setStatus('offline'); return; }
    if (err) this.report(err instanceof ProtocolError ? err : new Error(`${err.message} Reconnecting…`), 'connection');
    if (err instanceof ProtocolError && err.code === CODE.session_revoked) store.del('ticket:' + this.user);
    if (err instanceof ProtocolError && err.code === CODE.session_ended) { this.setStatus('offline'); return; }
    this.setStatus('connecting');
    setTimeout(() => this.reconnect(), err ? 300 : 100);
  }

  /** afterConnect: rejoin rooms where we left off, resync conversations, flush what was not acked. */
  async afterConnect() {
    const conn = this.conn;
    try {
      await this.refreshRoomList();
      const names = new Set([...this.savedRooms, ...this.rooms.keys()]);
      await Promise.all([...names].map(n => this.joinRoom(n, { quiet: true })));
      await this.refreshConvList();
      for (const cv of this.convs.values()) if (cv.opened) await this.syncConv(cv);
      for (const o of [...this.outbox]) this.sendRoomOnce(o);
      for (const cv of this.convs.values()) for (const o of [...cv.outbox]) this.sendConvOnce(cv, o);
    } catch (e) { if (conn === this.conn) this.report(e, 'restore'); }
  }

  /** signOut ends the session (its ticket no longer resumes) and forgets it here; the device keys stay. */
  async signOut() {
    this.stopped = true;
    const c = this.conn;
    if (c) { try { await c.request({ t: 'end' }, { timeoutMs: 3000 }); } catch { /* the answer is a fatal session_ended */ } c.close(); }
    await this.forget();
  }
  async forget() {
    if (this.user) await store.del('ticket:' + this.user);
    await store.del('last-user');
    this.stopped = true;
  }

  request(m) {
    if (!this.conn) return Promise.reject(new Error('not connected: reconnecting…'));
    return this.conn.request(m);
  }

  // ---- rooms (§8.2–§8.4) ----

  room(name) {
    let r = this.rooms.get(name);
    if (!r) { r = { name, joined: false, members: [], msgs: new Map(), contiguous: 0, oldest: null, epoch: null, head: 0, read: 0, unread: 0, more: true, streams: new Map() }; this.rooms.set(name, r); }
    return r;
  }

  async refreshRoomList() {
    const r = await this.request({ t: 'rooms' });
    for (const x of r.rooms || []) {
      const room = this.room(x.room);
      room.head = x.head; room.read = Math.max(room.read, x.read);
      if (room.epoch && x.epoch && room.epoch !== x.epoch) this.resetRoom(room);
      room.epoch = x.epoch || room.epoch;
      room.unread = Math.max(0, x.head - Math.max(x.read, room.contiguous));
    }
    this.emit('rooms');
  }

  resetRoom(room) { room.msgs.clear(); room.contiguous = 0; room.oldest = null; room.more = true; }

  async joinRoom(name, { quiet = false } = {}) {
    name = name.toLowerCase();
    const room = this.room(name);
    const m = { t: 'join', room: name };
    if (room.contiguous > 0) m.after = room.contiguous;
    let r;
    try { r = await this.request(m); } catch (e) { if (!quiet) throw e; this.report(e, `join ${name}`); return; }
    room.joined = true;
    room.members = r.members || [];
    if (room.epoch && r.epoch && room.epoch !== r.epoch) { this.resetRoom(room); }
    room.epoch = r.epoch || room.epoch; room.head = Math.max(room.head, r.head || 0);
    if (typeof r.after === 'number') room.contiguous = Math.max(room.contiguous, r.after);
    if (!this.savedRooms.includes(name)) { this.savedRooms.push(name); await store.set(`rooms:${this.user}`, this.savedRooms); }
    if (r.more) await this.fillRoom(room, room.contiguous);
    if (room.oldest === null) await this.loadOlder(name);
    this.emit('rooms'); this.emit('room', { room: name });
  }

  async leaveRoom(name) {
    await this.request({ t: 'leave', room: name });
    this.rooms.delete(name);
    this.savedRooms = this.savedRooms.filter(n => n !== name);
    await store.set(`rooms:${this.user}`, this.savedRooms);
    this.emit('rooms');
  }

  /** fillRoom pages history after seq (a gap, or a catch-up too long for join). */
  async fillRoom(room, after) {
    for (;;) {
      const r = await this.request({ t: 'history', room: room.name, after, limit: 200 });
      for (const m of r.msgs || []) { this.addRoomMsg(room, m); after = Math.max(after, m.seq); }
      if (!r.more || !(r.msgs || []).length) break;
    }
    this.emit('room', { room: room.name });
  }

  /** loadOlder fetches the page before the oldest message shown (scrolling up). */
  async loadOlder(name) {
    const room = this.room(name);
    if (!room.more || room.loading) return 0;
    room.loading = true;
    try {
      const before = room.oldest !== null ? room.oldest : (Math.max(room.head, room.contiguous) + 1);
      if (before <= 1) { room.more = false; return 0; }
      const r = await this.request({ t: 'history', room: name, before, limit: 50 });
      const msgs = r.msgs || [];
      for (const m of msgs) this.addRoomMsg(room, m, true);
      room.oldest = msgs.length ? Math.min(before, msgs[0].seq) : before;
      if (!r.more || !msgs.length || room.oldest <= 1) room.more = false;
      this.emit('room', { room: name, older: msgs.length });
      return msgs.length;
    } finally { room.loading = false; }
  }

  addRoomMsg(room, m, fromHistory = false) {
    if (m.stream && room.streams.delete(m.stream)) this.emit('room', { room: room.name }); // the stored answer replaces the growing text
    if (!m.seq) { room.msgs.set('x' + m.id, { ...m, seq: Infinity }); return true; }
    if (room.msgs.has(m.seq)) return false; // already held: dropped, never shown twice
    room.msgs.set(m.seq, m);
    const pending = this.outbox.findIndex(o => o.mid === m.id);
    if (pending >= 0) this.outbox.splice(pending, 1);
    if (room.oldest === null || m.seq < room.oldest) { if (fromHistory) room.oldest = m.seq; }
    if (m.seq === room.contiguous + 1) {
      room.contiguous = m.seq;
      while (room.msgs.has(room.contiguous + 1)) room.contiguous++;
    } else if (m.seq > room.contiguous + 1 && !fromHistory && room.contiguous > 0 && !room.filling) {
      room.filling = true; // a gap: fetch what is missing
      this.fillRoom(room, room.contiguous).catch(e => this.report(e, 'history')).finally(() => { room.filling = false; });
    }
    room.head = Math.max(room.head, m.seq);
    return true;
  }

  roomMessages(name) {
    const room = this.room(name);
    const list = [...room.msgs.values()].sort(sortSeq);
    const pend = this.outbox.filter(o => o.room === name).map(o => ({ pending: true, id: o.mid, from: this.user, body: o.body, ts: o.ts }));
    const streams = [...room.streams.values()];
    return [...list, ...streams, ...pend];
  }

  /** sendRoom sends text to a room; it is retried with the same mid until acked (no duplicates). */
  async sendRoom(name, body) {
    const o = { room: name, mid: newUUID(), body, ts: Date.now() };
    this.outbox.push(o);
    this.emit('room', { room: name });
    return this.sendRoomOnce(o);
  }
  async sendRoomOnce(o) {
    try {
      const r = await this.request({ t: 'send', room: o.room, body: o.body, mid: o.mid });
      const i = this.outbox.indexOf(o);
      if (i >= 0) this.outbox.splice(i, 1);
      const room = this.room(o.room);
      if (r.seq && !room.msgs.has(r.seq)) this.addRoomMsg(room, { t: 'msg', id: o.mid, room: o.room, from: this.user, body: o.body, seq: r.seq, ts: r.ts });
      this.emit('room', { room: o.room });
    } catch (e) {
      if (e instanceof ProtocolError && e.sealed && !e.fatal && e.code !== CODE.unavailable && e.code !== CODE.rate_limited) {
        const i = this.outbox.indexOf(o); if (i >= 0) this.outbox.splice(i, 1); // refused for good
        this.emit('room', { room: o.room });
      }
      this.report(e, 'send');
      if (e instanceof ProtocolError && e.code === CODE.rate_limited) setTimeout(() => this.outbox.includes(o) && this.sendRoomOnce(o), 1500);
    }
  }

  /** markRead records what the person has seen (debounced). */
  markRead(name) {
    const room = this.rooms.get(name);
    if (!room || !room.contiguous) return;
    room.unread = 0;
    if (room.contiguous <= room.read) return;
    const seq = room.contiguous;
    room.read = seq;
    this.request({ t: 'read', room: name, seq }).catch(() => { room.read = 0; });
    this.emit('rooms');
  }

  /** stopStream asks the producer of a streamed answer to stop. */
  async stopStream(name, stream) {
    const s = this.room(name).streams.get(stream);
    if (s) { s.stopping = true; this.emit('room', { room: name, stream }); }
    await this.request({ t: 'stream', room: name, stream, event: 'stop' });
  }

  /**
   * onStream follows a room stream (§8.6). The server relays every event
   * to every member, the sender included, without checking them: a stream
   * is shown from its `start` on, and only the events of the member who
   * sent that `start` count (a `stop` from anyone marks it as stopping).
   */
  onStream(m) {
    const room = this.room(m.room);
    const s = room.streams.get(m.stream);
    if (m.event === 'start') {
      if (s) return; // a repeated start
      if ([...room.msgs.values()].some(x => x.stream === m.stream)) return; // the final message is already here
      room.streams.set(m.stream, { stream: m.stream, from: m.from, body: m.body || '', live: true, seq: Infinity, ts: m.ts });
      this.noteBot(m.from);
    } else if (!s) {
      return; // not seen from its start (joined or reconnected in the middle)
    } else if (m.event === 'stop') {
      if (s.live) s.stopping = true;
    } else if (m.from !== s.from || !s.live) {
      return; // another member's event, or one after the end
    } else if (m.event === 'delta') {
      s.body += m.body || '';
    } else if (m.event === 'end') {
      s.live = false; s.stopping = false; s.reason = m.reason || 'done'; s.body += m.body || '';
    } else return; // an event this client does not know
    this.emit('room', { room: m.room, stream: m.stream });
  }

  // ---- pushes ----

  onPush(m) {
    switch (m.t) {
      case 'msg': {
        const room = this.room(m.room);
        if (this.addRoomMsg(room, m)) {
          if (m.from !== this.user && !this.isViewing('room', m.room)) room.unread++;
          this.emit('room', { room: m.room, msg: m }); this.emit('rooms');
        }
        break;
      }
      case 'presence': {
        const room = this.room(m.room);
        if (m.event === 'join') room.members = [...room.members, m.from].sort();
        else { const i = room.members.indexOf(m.from); if (i >= 0) room.members = room.members.filter((_, j) => j !== i); }
        this.emit('room', { room: m.room, presence: m });
        break;
      }
      case 'stream': this.onStream(m); break;
      case 'mention': this.emit('mention', m); break; // §8.6: no text; joining the room shows it
      case 'key_change': this.onKeyChange(m); break;
      case 'conv_msg': this.inOrder(() => this.onConvMsg(m)); break;
      case 'conv_key': this.inOrder(() => this.onConvKey(m)); break;
      case 'conv_stream': this.inOrder(() => this.onConvStream(m)); break;
      case 'error': this.report(new ProtocolError(m.code, m.error, { fatal: false, sealed: true }), 'server'); break;
      default: break; // unknown pushes are ignored (§15)
    }
  }

  /** inOrder handles conversation pushes one after the other, so a stream's pieces are opened in the order they came. */
  inOrder(fn) {
    this.convQueue = this.convQueue.then(fn).catch(e => this.report(e, 'conversation'));
  }

  isViewing(kind, name) { return this.viewing && this.viewing.kind === kind && this.viewing.name === name && document.visibilityState === 'visible'; }

  onKeyChange(m) {
    for (const cv of this.convs.values()) {
      if (cv.peer !== m.user && m.user !== this.user) continue;
      cv.stale = true; // look the devices up again before the next send
      if (cv.opened && this.conn) this.refreshDevices(cv).then(() => { this.emit('conv', { peer: cv.peer }); this.emit('rooms'); }, e => this.report(e, 'lookup'));
    }
    this.emit('keychange', m);
  }

  // ---- direct conversations (§8.5, docs/e2e.md) ----

  conv(peer) {
    let cv = this.convs.get(peer);
    if (!cv) {
      cv = { peer, id: null, msgs: new Map(), contiguous: 0, oldest: null, head: 0, read: 0, unread: 0, more: true, outbox: [], unverified: new Set(), devices: new Map(), streams: new Map(), opened: false, shown: new Set() };
      this.convs.set(peer, cv);
    }
    return cv;
  }

  async refreshConvList() {
    const r = await this.request({ t: 'convs' });
    for (const x of r.convs || []) {
      const cv = this.conv(x.user);
      cv.id = x.conv; cv.head = x.head; cv.read = Math.max(cv.read, x.read);
      cv.unread = Math.max(0, x.head - Math.max(x.read, cv.contiguous));
    }
    this.emit('rooms');
  }

  /** openConversation opens (or creates) the conversation with peer, end to end. */
  async openConversation(peer) {
    if (peer === this.user) throw new Error('that is you');
    const cv = this.conv(peer);
    const r = await this.request({ t: 'conv_open', user: peer });
    cv.id = r.conv; cv.idBytes = uuidBytes(r.conv); cv.server = r.version || 0; cv.head = r.head || 0; cv.read = Math.max(cv.read, r.seq || 0);
    if (!cv.ring) cv.ring = new E.Keyring(cv.idBytes);
    cv.guard = E.ReplayGuard.fromJSON(await store.get(`guard:${this.user}:${cv.id}`));
    await this.refreshDevices(cv);
    await this.loadKeys(cv);
    cv.opened = true;
    if (cv.oldest === null) await this.loadOlderConv(peer);
    this.emit('rooms'); this.emit('conv', { peer });
    return cv;
  }

  /** refreshDevices looks both users up and checks them against the pins (trust on first use). */
  async refreshDevices(cv) {
    const devices = new Map();
    cv.fps = {};
    for (const user of [this.user, cv.peer]) {
      const l = await acct.lookup(this.conn, user);
      for (const d of l.devices) devices.set(d.user + '/' + d.id, d);
      cv.fps[user] = l.fingerprint;
      const now = l.devices.map(d => hex(d.fp)).sort();
      const key = `contact:${this.user}:${user}`;
      const pinned = await store.get(key);
      if (!pinned) await store.set(key, now);
      else if (pinned.join() !== now.join()) {
        if (!cv.unverified.has(user)) this.emit('keychange', { user, conv: cv.peer, pinned, now });
        cv.unverified.add(user);
      } else cv.unverified.delete(user);
    }
    cv.devices = devices;
    cv.stale = false;
    if ([...devices.values()].some(d => d.user === cv.peer && /^bot$/i.test(d.name || ''))) this.noteBot(cv.peer);
  }

  /** acceptDevices pins user's devices as now listed (after comparing the safety number). */
  async acceptDevices(peer, user) {
    const cv = this.conv(peer);
    const now = [...cv.devices.values()].filter(d => d.user === user).map(d => hex(d.fp)).sort();
    await store.set(`contact:${this.user}:${user}`, now);
    cv.unverified.delete(user);
    for (const m of cv.msgs.values()) if (m.from === user && m.fp && now.includes(m.fp)) m.verified = true;
    this.emit('conv', { peer });
  }

  /** safetyNumber is computed from this browser's own view of both users' devices (e2e.md §3.4). */
  async safetyNumber(peer) {
    const cv = this.conv(peer);
    if (!cv.fps) await this.refreshDevices(cv);
    return E.safetyNumber(cv.fps[this.user], cv.fps[peer]);
  }

  me() { return { user: this.user, id: this.device.id, idBytes: this.device.idBytes, signKey: this.device.signKey, decryptKey: this.device.decryptKey }; }

  async loadKeys(cv) {
    let since = cv.ring.latest() ? cv.ring.latest().version : 0;
    for (;;) {
      const r = await this.request({ t: 'conv_keys', conv: cv.id, version: since });
      for (const e of r.envelopes || []) {
        since = Math.max(since, e.version); cv.server = Math.max(cv.server || 0, e.version);
        try { await this.addEnvelope(cv, unb64(e.envelope)); } catch (err) {
          if (!(err instanceof E.E2EError) || !['ErrNotARecipient', 'ErrUnknownDevice'].includes(err.name)) this.report(err, 'key');
        }
      }
      if (!r.more || !(r.envelopes || []).length) return;
    }
  }

  async addEnvelope(cv, data) {
    const env = E.parseEnvelope(data);
    let creator = cv.devices.get(env.creatorUser + '/' + env.creatorDevice);
    if (!creator) { await this.refreshDevices(cv); creator = cv.devices.get(env.creatorUser + '/' + env.creatorDevice); }
    if (!creator) throw new E.E2EError('ErrUnknownDevice', 'key made by a device not listed');
    cv.ring.add(await E.openEnvelope(env, cv.idBytes, cv.peer, creator, this.me()));
  }

  /** rotateIfNeeded makes the next key version when there is none, the devices changed, or this device has no counter for it. */
  async rotateIfNeeded(cv) {
    if (cv.stale) await this.refreshDevices(cv);
    for (let tries = 0; tries < 3; tries++) {
      const key = cv.ring.latest();
      const devs = [...cv.devices.values()];
      if (key && key.version >= (cv.server || 0)) {
        const digest = await E.deviceSetDigest(devs);
        const counter = await store.get(`counter:${this.user}:${this.device.id}:${cv.id}:${key.version}`);
        const used = Number(cv.guard.lastCounter(cv.idBytes, this.user, this.device.id, key.version));
        // Counters are persisted before use, next to the device's keys: a
        // version without one was never used by this device.
        if (equal(digest, key.digest)) {
          if (counter === undefined || counter < used) await store.set(`counter:${this.user}:${this.device.id}:${cv.id}:${key.version}`, Math.max(used, counter || 0));
          return key;
        }
      } else if (key && key.version < (cv.server || 0)) { await this.loadKeys(cv); if (cv.ring.latest() !== key) continue; }
      const next = (cv.server || 0) + 1;
      const { encoding, key: k } = await E.newEnvelope(this.me(), { convId: cv.idBytes, version: next, devices: devs });
      try { await this.request({ t: 'conv_put_key', conv: cv.id, version: next, envelope: b64(encoding) }); } catch (e) {
        if (e instanceof ProtocolError && e.code === CODE.conflict) { cv.server = next; await this.loadKeys(cv); continue; }
        throw e;
      }
      cv.ring.add(k); cv.server = next;
      await store.set(`counter:${this.user}:${this.device.id}:${cv.id}:${next}`, 0);
      return k;
    }
    throw new ProtocolError(CODE.conflict, 'other devices keep rotating the key', { fatal: false });
  }

  /** sendConv seals text and sends it; a retry sends the same bytes (same message id and counter). */
  async sendConv(peer, text) {
    const cv = this.convs.get(peer);
    if (!cv || !cv.opened) await this.openConversation(peer);
    const c = this.conv(peer);
    const key = await this.rotateIfNeeded(c);
    const ck = `counter:${this.user}:${this.device.id}:${c.id}:${key.version}`;
    const counter = ((await store.get(ck)) || 0) + 1;
    await store.set(ck, counter); // persisted before use: a counter is never reused
    const mid = newUUID();
    const record = await E.sealRecord(key, this.me(), { recipient: peer, messageId: uuidBytes(mid), counter: BigInt(counter), text });
    const o = { mid, text, record: b64(record), ts: Date.now() };
    c.outbox.push(o);
    this.emit('conv', { peer });
    return this.sendConvOnce(c, o);
  }

  async sendConvOnce(cv, o) {
    if (cv.sending) return; // records of one device go out in counter order: one at a time
    cv.sending = true;
    try {
      while (cv.outbox.length) {
        const x = cv.outbox[0];
        const r = await this.request({ t: 'conv_send', conv: cv.id, record: x.record });
        cv.outbox.shift();
        if (!cv.msgs.has(r.seq)) this.addConvMsg(cv, { seq: r.seq, from: this.user, text: x.text, messageId: x.mid, ts: r.ts || x.ts, verified: true, mine: true });
        this.emit('conv', { peer: cv.peer });
      }
    } catch (e) {
      if (e instanceof ProtocolError && e.sealed && !e.fatal && ![CODE.unavailable, CODE.rate_limited].includes(e.code)) { cv.outbox.shift(); this.emit('conv', { peer: cv.peer }); }
      this.report(e, 'send');
    } finally { cv.sending = false; }
  }

  addConvMsg(cv, m) {
    if (cv.msgs.has(m.seq)) return false;
    if (m.messageId && cv.shown.has(m.messageId)) return false;
    cv.msgs.set(m.seq, m); if (m.messageId) cv.shown.add(m.messageId);
    if (m.seq === cv.contiguous + 1) { cv.contiguous = m.seq; while (cv.msgs.has(cv.contiguous + 1)) cv.contiguous++; }
    cv.head = Math.max(cv.head, m.seq);
    return true;
  }

  /** openConvMsg opens a conv_msg through the replay guard (a re-read of an accepted record is shown once). */
  async openConvMsg(cv, m) {
    const rec = E.parseRecord(unb64(m.record));
    let sender = cv.devices.get(rec.sender + '/' + rec.senderDevice);
    if (!sender) { await this.refreshDevices(cv); sender = cv.devices.get(rec.sender + '/' + rec.senderDevice); }
    if (!sender) throw new E.E2EError('ErrUnknownDevice', 'record from a device not listed');
    if (!cv.ring.get(rec.version)) await this.loadKeys(cv);
    let msg;
    try { msg = await E.openRecord(cv.ring, rec, sender, cv.guard); this.saveGuard(cv); } catch (e) {
      if (!(e instanceof E.E2EError) || e.name !== 'ErrReplay') throw e;
      msg = await E.openRecord(cv.ring, rec, sender, null); // accepted before (reload, history): a re-read
    }
    const pinnedFps = (await store.get(`contact:${this.user}:${msg.sender}`)) || [];
    const verified = !cv.unverified.has(msg.sender) && pinnedFps.includes(hex(sender.fp));
    return { seq: m.seq, from: msg.sender, text: msg.text, messageId: msg.messageId, ts: msg.timestampMs, verified, fp: hex(sender.fp), mine: msg.sender === this.user };
  }

  saveGuard(cv) {
    clearTimeout(cv.guardTimer);
    cv.guardTimer = setTimeout(() => store.set(`guard:${this.user}:${cv.id}`, cv.guard.toJSON()), 200);
  }

  async onConvMsg(m) {
    const cv = [...this.convs.values()].find(c => c.id === m.conv) || (await this.refreshConvList(), [...this.convs.values()].find(c => c.id === m.conv));
    if (!cv) return;
    if (!cv.opened) { cv.head = Math.max(cv.head, m.seq); if (m.from !== this.user) cv.unread++; this.emit('rooms'); return; }
    if (cv.msgs.has(m.seq)) return;
    try {
      const x = await this.openConvMsg(cv, m);
      if (this.addConvMsg(cv, x) && !x.mine && !this.isViewing('conv', cv.peer)) cv.unread++;
    } catch (e) {
      this.addConvMsg(cv, { seq: m.seq, from: m.from, failed: e.name || 'error', ts: m.ts });
      this.report(e, 'conversation');
    }
    if (m.stream) cv.streams.delete(m.stream); // the stored answer replaces the growing text (live only: history has no stream)
    this.emit('conv', { peer: cv.peer }); this.emit('rooms');
  }

  async onConvKey(m) {
    const cv = [...this.convs.values()].find(c => c.id === m.conv);
    if (cv && cv.opened) { cv.server = Math.max(cv.server || 0, m.version); await this.loadKeys(cv); }
  }

  /**
   * onConvStream follows a conversation stream (§8.6): shown from its
   * `start`, only the starter's events count; each piece is a record
   * opened (and checked) like a conv_msg.
   */
  async onConvStream(m) {
    const cv = [...this.convs.values()].find(c => c.id === m.conv);
    if (!cv || !cv.opened) return;
    const s = cv.streams.get(m.stream);
    if (m.event === 'start') {
      if (s) return;
      cv.streams.set(m.stream, { stream: m.stream, from: m.from, text: '', live: true, seq: Infinity, ts: m.ts, verified: true });
      this.noteBot(m.from);
    } else if (!s) {
      return;
    } else if (m.event === 'stop') {
      if (s.live) s.stopping = true;
    } else if (m.from !== s.from || !s.live || !['delta', 'end'].includes(m.event)) {
      return;
    } else {
      if (m.record) {
        const x = await this.openConvMsg(cv, { seq: Infinity, record: m.record });
        if (x.from !== s.from) return; // a record must be the starter's own
        s.text += x.text; s.verified = s.verified && x.verified;
      }
      if (m.event === 'end') { s.live = false; s.stopping = false; s.reason = m.reason || 'done'; }
    }
    this.emit('conv', { peer: cv.peer });
  }

  async stopConvStream(peer, stream) {
    const cv = this.conv(peer);
    const s = cv.streams.get(stream);
    if (s) { s.stopping = true; this.emit('conv', { peer }); }
    await this.request({ t: 'conv_stream', conv: cv.id, stream, event: 'stop' });
  }

  /** syncConv fetches what was missed (after a reconnect), then what is new. */
  async syncConv(cv) {
    let after = cv.contiguous;
    for (;;) {
      const r = await this.request({ t: 'conv_history', conv: cv.id, after, limit: 200 });
      for (const m of r.msgs || []) { after = Math.max(after, m.seq); if (!cv.msgs.has(m.seq)) { try { this.addConvMsg(cv, await this.openConvMsg(cv, m)); } catch (e) { this.addConvMsg(cv, { seq: m.seq, from: m.from, failed: e.name || 'error' }); } } }
      if (!r.more || !(r.msgs || []).length) break;
    }
    this.emit('conv', { peer: cv.peer });
  }

  async loadOlderConv(peer) {
    const cv = this.conv(peer);
    if (!cv.more || cv.loading) return 0;
    cv.loading = true;
    try {
      const before = cv.oldest !== null ? cv.oldest : cv.head + 1;
      if (before <= 1) { cv.more = false; if (cv.oldest === null) cv.oldest = before; return 0; }
      const r = await this.request({ t: 'conv_history', conv: cv.id, before, limit: 50 });
      const msgs = r.msgs || [];
      for (const m of msgs) {
        try { this.addConvMsg(cv, await this.openConvMsg(cv, m)); } catch (e) { this.addConvMsg(cv, { seq: m.seq, from: m.from, failed: e.name || 'error' }); }
      }
      cv.oldest = msgs.length ? msgs[0].seq : before;
      if (cv.contiguous < cv.head && msgs.length && msgs[msgs.length - 1].seq === cv.head) cv.contiguous = cv.head;
      if (!r.more || !msgs.length || cv.oldest <= 1) cv.more = false;
      this.emit('conv', { peer, older: msgs.length });
      return msgs.length;
    } finally { cv.loading = false; }
  }

  convMessages(peer) {
    const cv = this.conv(peer);
    const list = [...cv.msgs.values()].sort(sortSeq);
    const pend = cv.outbox.map(o => ({ pending: true, from: this.user, text: o.text, messageId: o.mid, ts: o.ts, mine: true }));
    return [...list, ...cv.streams.values(), ...pend];
  }

  markConvRead(peer) {
    const cv = this.convs.get(peer);
    if (!cv || !cv.id || !cv.contiguous) return;
    cv.unread = 0;
    if (cv.contiguous <= cv.read) return;
    const seq = cv.contiguous; cv.read = seq;
    this.request({ t: 'read', conv: cv.id, seq }).catch(() => { cv.read = 0; });
    this.emit('rooms');
  }
}

function defaultURL() { return (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws'; }
