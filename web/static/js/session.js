// A protocol connection: the handshake of docs/protocol.md §4 (full and
// resumed), then records carrying JSON messages (§8), with requests
// matched to answers by ref.
import { bytes, concat, equal, fromUtf8, hex, newUUID, random, utf8 } from './bytes.js';
import {
  CODE, OAEP, PSS, ProtocolError, RecordLayer, SUITES, T, codeName, encodeAlert, encodeClientHello, encodeFinished, expand,
  finishedMAC, fingerprint, importRSAPublic, importSecret, parseAlert, parseFinished, parseServerHello, parseServerVerify,
  pssVerify, sha256, signedContent, MAX_FRAME,
} from './protocol.js';

const SESSION_LABEL = utf8('messenger v1 session secret');

/**
 * SessionKeyPool keeps one per-session RSA-OAEP key generated ahead of
 * need (RSA generation takes from tens of milliseconds to a second), so
 * that a connection never waits for it inside the server's handshake
 * timeout. Each key is used for one handshake only.
 */
export class SessionKeyPool {
  constructor() { this.pending = null; this.fill(); }
  fill() {
    this.pending = (async () => {
      const kp = await crypto.subtle.generateKey({ name: 'RSA-OAEP', modulusLength: 2048, publicExponent: Uint8Array.of(1, 0, 1), hash: 'SHA-256' }, false, ['encrypt', 'decrypt']);
      return { privateKey: kp.privateKey, der: bytes(await crypto.subtle.exportKey('spki', kp.publicKey)) };
    })();
    this.pending.catch(() => {});
  }
  /** take returns a ready key (waiting only if none is ready yet) and starts the next one. */
  async take() { const p = this.pending; this.fill(); return p; }
}

/** closeError maps a WebSocket close to an error (4001–4999: a code, not authenticated). */
function closeError(ev) {
  if (ev.code > 4000 && ev.code < 5000) return new ProtocolError(ev.code - 4000, ev.reason || codeName(ev.code - 4000), { sealed: false });
  const e = new Error(ev.code === 1000 ? 'The server closed the connection.' : `The connection to the server was lost (${ev.code}).`);
  e.closeCode = ev.code;
  return e;
}

/**
 * Connection is one WebSocket carrying one protocol session. Events:
 * 'message' (detail: a pushed JSON message), 'close' (detail: the error
 * that ended it, or null for a close we asked for).
 */
export class Connection extends EventTarget {
  constructor(ws) {
    super();
    this.ws = ws;
    this.inbox = []; this.waiters = []; this.closed = null;
    this.pending = new Map();
    this.handshaking = true;
    ws.binaryType = 'arraybuffer';
    ws.onmessage = ev => this.onFrame(ev.data);
    ws.onclose = ev => this.onClose(closeError(ev), ev);
    ws.onerror = () => {};
  }

  /**
   * open connects and runs the handshake. opts: url, keys (SessionKeyPool),
   * ticket ({id: Uint8Array(16), secretKey: CryptoKey}) to try resuming,
   * checkPin(fingerprintHex) that throws to refuse, timeoutMs.
   */
  static async open({ url, keys, ticket = null, checkPin, timeoutMs = 10000 }) {
    const sk = await keys.take(); // generated before connecting: not inside the server's timeout
    const ws = new WebSocket(url);
    const c = new Connection(ws);
    let timer;
    const timeout = new Promise((_, reject) => { timer = setTimeout(() => reject(new ProtocolError(CODE.handshake_timeout, 'handshake timed out')), timeoutMs); });
    try {
      return await Promise.race([c.handshake(sk, ticket, checkPin), timeout]);
    } catch (e) {
      c.abort(e);
      throw e;
    } finally { clearTimeout(timer); }
  }

  onFrame(data) {
    if (typeof data === 'string') { this.fail(new ProtocolError(CODE.malformed, 'text frame')); return; }
    const f = new Uint8Array(data);
    if (this.handshaking) {
      if (this.waiters.length) this.waiters.shift().resolve(f); else this.inbox.push(f);
      return;
    }
    this.rx.open(f).then(pt => this.dispatch(pt), e => this.fail(e));
  }

  onClose(err, ev) {
    if (this.closed) return;
    this.closed = this.closing ? (this.closeReason || null) : err;
    for (const w of this.waiters) w.reject(err);
    this.waiters = [];
    if (this.readyWaiter) { this.readyWaiter.reject(err || new Error('closed')); this.readyWaiter = null; }
    for (const [, p] of this.pending) p.reject(this.closed || err);
    this.pending.clear();
    this.dispatchEvent(new CustomEvent('close', { detail: this.closed, }));
  }

  next() {
    if (this.inbox.length) return Promise.resolve(this.inbox.shift());
    if (this.closed) return Promise.reject(this.closed);
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  /** nextHandshake reads a frame, turning an Alert into the server's error. */
  async nextHandshake() {
    const f = await this.next();
    if (f.length === 0) throw new ProtocolError(CODE.malformed, 'empty frame');
    if (f.length > MAX_FRAME) throw new ProtocolError(CODE.frame_too_large, 'frame too large');
    if (f[0] === T.ALERT) { const a = parseAlert(f); const e = new ProtocolError(a.code, a.reason || codeName(a.code)); e.peer = true; throw e; }
    return f;
  }

  async waitOpen() {
    if (this.ws.readyState === WebSocket.OPEN) return;
    await new Promise((resolve, reject) => {
      this.ws.addEventListener('open', resolve, { once: true });
      this.ws.addEventListener('close', ev => reject(closeError(ev)), { once: true });
    });
  }

  async handshake(sk, ticket, checkPin) {
    await this.waitOpen();
    const ch = encodeClientHello({ random: random(32), suites: SUITES, sessionKey: sk.der, resumeId: ticket ? ticket.id : null });
    this.ws.send(ch);
    const shf = await this.nextHandshake();
    const sh = parseServerHello(shf);
    if (sh.version !== 1) throw new ProtocolError(CODE.unsupported_version, 'server speaks another version');
    if (!SUITES.includes(sh.suite)) throw new ProtocolError(CODE.no_common_suite, 'server chose a suite not offered');
    const idKey = await importRSAPublic(sh.identityKey, PSS, ['verify']);
    if (sh.resumed && !(ticket && equal(sh.sessionId, ticket.id))) throw new ProtocolError(CODE.unexpected_message, 'server resumed a session not asked for');
    const thKeys = await sha256(ch, shf);
    const fp = await fingerprint(sh.identityKey);
    const parts = [ch, shf];
    let secretKey;
    if (!sh.resumed) {
      const svf = await this.nextHandshake();
      const sig = parseServerVerify(svf);
      if (!await pssVerify(idKey, sig, signedContent('messenger v1 server signature', thKeys))) throw new ProtocolError(CODE.bad_signature, 'the server signature does not verify');
      await checkPin(fp);
      let secret;
      try { secret = bytes(await crypto.subtle.decrypt({ name: 'RSA-OAEP', label: SESSION_LABEL }, sk.privateKey, sh.wrapped)); } catch { throw new ProtocolError(CODE.malformed, 'cannot unwrap the session secret'); }
      if (secret.length !== 32) throw new ProtocolError(CODE.malformed, 'cannot unwrap the session secret');
      secretKey = await importSecret(secret);
      secret.fill(0);
      parts.push(svf);
    } else {
      secretKey = ticket.secretKey;
    }
    const thSfin = await sha256(...parts);
    const sff = await this.nextHandshake();
    const sfin = parseFinished(sff);
    if (!equal(sfin, await finishedMAC(secretKey, 'server finished', thKeys, thSfin))) throw new ProtocolError(CODE.bad_finished, 'server Finished does not verify');
    if (sh.resumed) await checkPin(fp);
    parts.push(sff);
    const cf = encodeFinished(await finishedMAC(secretKey, 'client finished', thKeys, await sha256(...parts)));
    parts.push(cf);
    this.exporter = await expand(secretKey, 'exporter', await sha256(...parts), 32);
    this.tx = await RecordLayer.derive(secretKey, sh.suite, 'c2s', thKeys);
    this.rx = await RecordLayer.derive(secretKey, sh.suite, 's2c', thKeys);
    this.suite = sh.suite;
    this.fingerprint = fp;
    this.ticket = { id: sh.sessionId, secretKey };
    this.resumed = sh.resumed;
    // From here frames are records (an Alert in place of the first is the server's refusal).
    const ready = new Promise((resolve, reject) => { this.readyWaiter = { resolve, reject }; });
    this.handshaking = false;
    this.ws.send(cf);
    const r = await ready;
    this.session = r.session;
    // Requests carry the time on the server's clock as far as this one can
    // tell (§9: ts must be within the window of the server's clock).
    const skew = (r.session && r.session.server_time) ? r.session.server_time - Date.now() : 0;
    this.skew = Math.abs(skew) > 2000 ? skew : 0;
    return this;
  }

  dispatch(pt) {
    let m;
    try { m = JSON.parse(fromUtf8(pt)); } catch { this.fail(new ProtocolError(CODE.malformed, 'server sent undecodable JSON')); return; }
    if (this.readyWaiter) {
      const w = this.readyWaiter; this.readyWaiter = null;
      if (m.t === 'ready') { w.resolve(m); return; }
      if (m.t === 'error') { const e = new ProtocolError(m.code, m.error, { sealed: true, fatal: true }); w.reject(e); this.fail(e, true); return; }
      w.reject(new ProtocolError(CODE.unexpected_message, 'first record is not ready')); return;
    }
    if (m.t === 'error' && m.fatal) { this.fail(new ProtocolError(m.code, m.error, { sealed: true, fatal: true }), true); return; }
    if (m.ref && this.pending.has(m.ref)) {
      const p = this.pending.get(m.ref); this.pending.delete(m.ref);
      if (m.t === 'error') p.reject(new ProtocolError(m.code, m.error, { sealed: true, fatal: false, ref: m.ref })); else p.resolve(m);
      return;
    }
    this.dispatchEvent(new CustomEvent('message', { detail: m }));
  }

  /** request sends msg with a new id and the current time, and resolves with the answer. */
  request(msg, { timeoutMs = 45000 } = {}) {
    if (this.closed || this.closing) return Promise.reject(this.closed || new Error('connection closed'));
    const id = newUUID();
    const m = { ...msg, id, ts: Date.now() + (this.skew || 0) };
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => { if (this.pending.delete(id)) reject(new ProtocolError(CODE.unavailable, 'no answer from the server', { fatal: false })); }, timeoutMs);
      this.pending.set(id, { resolve: v => { clearTimeout(timer); resolve(v); }, reject: e => { clearTimeout(timer); reject(e); } });
      this.send(m).catch(e => { if (this.pending.delete(id)) { clearTimeout(timer); reject(e); } });
    });
  }

  /** send seals one message (the record layer keeps the order of calls). */
  async send(m) {
    const frame = await this.tx.seal(utf8(JSON.stringify(m)));
    if (this.ws.readyState !== WebSocket.OPEN) throw this.closed || new Error('connection closed');
    this.ws.send(frame);
  }

  /** fail ends the connection with err (sealed errors came from the server: no Alert back). */
  fail(err, fromServer = false) {
    if (this.closed) return;
    this.closing = true; this.closeReason = err;
    try { this.ws.close(fromServer ? 1000 : 4000 + (err.code || 15), fromServer ? '' : codeName(err.code || 15)); } catch { this.ws.close(); }
    this.onClose(err);
  }

  /** abort ends a failed handshake, telling the server with an Alert when the fault was found here. */
  abort(err) {
    if (this.closed) return;
    const code = err instanceof ProtocolError ? err.code : CODE.internal;
    try {
      if (this.ws.readyState === WebSocket.OPEN && !err.peer && this.handshaking) this.ws.send(encodeAlert(code, codeName(code)));
      this.ws.close(4000 + code, codeName(code));
    } catch { try { this.ws.close(); } catch { /* already closed */ } }
    this.closing = true; this.closeReason = err;
    this.onClose(err);
  }

  /** close ends the connection (the session stays resumable). */
  close() { this.closing = true; this.closeReason = null; try { this.ws.close(1000); } catch { /* closed */ } this.onClose(null); }
}
