// End-to-end envelope of direct conversations, format 1 (docs/e2e.md), with
// WebCrypto: fingerprints and safety numbers (§3), key envelopes (§4),
// message records (§5), the replay guard (§6).
import { Reader, ShortError, bytes, compare, concat, equal, fromUtf8, hex, random, u16, u32, u64, u8, utf8, uuidBytes, uuidString, vec16, vec8 } from './bytes.js';

const subtle = () => crypto.subtle;
export const FORMAT = 1;
export const SUITE_GCM = 1, SUITE_CBC = 2;
export const MAX_RECIPIENTS = 64;
export const MAX_PLAINTEXT = 16384;
export const MAX_ENVELOPE = 36659;
export const MAX_RECORD = 17102;
export const MAX_IDS = 4096;
const LABEL_CONV_KEY = utf8('messenger v1 conversation key');
const SALT = utf8('messenger v1 e2e');

/** E2EError: name is one of docs/e2e.md §12 (ErrMalformed, …). */
export class E2EError extends Error {
  constructor(name, message) { super(message ? `${name}: ${message}` : name); this.name = name; }
}
const err = (name, msg) => { throw new E2EError(name, msg); };

const userRe = /^[a-z0-9][a-z0-9_.-]*$/;
export function validUser(u) { return typeof u === 'string' && u.length >= 1 && u.length <= 32 && userRe.test(u); }
function userBytesOK(b) { if (b.length < 1 || b.length > 32) return false; try { return validUser(fromUtf8(b)); } catch { return false; } }

async function sha(alg, ...parts) { return bytes(await subtle().digest(alg, concat(...parts))); }
function signedContent(context, digest) { return concat(new Uint8Array(64).fill(0x20), utf8(context), u8(0), digest); }

// ---- §3 devices, fingerprints, safety number ----

/** deviceFingerprint: §3.1. */
export async function deviceFingerprint(user, idBytes, signingDer, encryptionDer) {
  const ub = utf8(user);
  return sha('SHA-256', utf8('messenger v1 device'), u8(0), u8(ub.length), ub, idBytes, u16(signingDer.length), signingDer, u16(encryptionDer.length), encryptionDer);
}

/** userFingerprint: §3.2 over the device fingerprints, sorted here. */
export async function userFingerprint(user, deviceFps) {
  const fps = [...deviceFps].sort(compare);
  if (fps.length < 1 || fps.length > 64) err('ErrBadDevice', 'a user has 1 to 64 devices');
  for (let i = 1; i < fps.length; i++) if (equal(fps[i - 1], fps[i])) err('ErrBadDevice', 'a device twice');
  const ub = utf8(user);
  return sha('SHA-256', utf8('messenger v1 user'), u8(0), u8(ub.length), ub, u8(fps.length), ...fps);
}

function sort2(a, b) { return compare(a, b) > 0 ? [b, a] : [a, b]; }

/** groupUsers splits devices into exactly two users, in byte order. */
function groupUsers(devices) {
  const by = new Map();
  for (const d of devices) { if (!validUser(d.user)) err('ErrBadDevice', 'invalid user'); if (!by.has(d.user)) by.set(d.user, []); by.get(d.user).push(d); }
  if (by.size !== 2) err('ErrBadDevice', 'devices of exactly two users');
  return by;
}

/** deviceSetDigest: §3.3 over the devices of both users. */
export async function deviceSetDigest(devices) {
  const by = groupUsers(devices);
  const fps = [];
  for (const [u, ds] of by) fps.push(await userFingerprint(u, ds.map(d => d.fp)));
  const [a, b] = sort2(fps[0], fps[1]);
  return sha('SHA-256', utf8('messenger v1 device set'), u8(0), a, b);
}

/** safetyNumber: §3.4, twelve groups of five digits. */
export async function safetyNumber(userFpA, userFpB) {
  const [a, b] = sort2(userFpA, userFpB);
  const h = await sha('SHA-512', utf8('messenger v1 safety number'), u8(0), a, b);
  const groups = [];
  for (let i = 0; i < 12; i++) {
    let v = 0;
    for (let j = 0; j < 5; j++) v = v * 256 + h[5 * i + j];
    groups.push(String(v % 100000).padStart(5, '0'));
  }
  return groups.join(' ');
}

/**
 * makeDevice describes a (remote or own) device from its public keys:
 * {user, id, idBytes, signingDer, encryptionDer, fp}; keys are imported
 * on first use.
 */
export async function makeDevice({ user, id, signingDer, encryptionDer }) {
  const idBytes = typeof id === 'string' ? uuidBytes(id) : id;
  return { user, id: uuidString(idBytes), idBytes, signingDer, encryptionDer, fp: await deviceFingerprint(user, idBytes, signingDer, encryptionDer) };
}

async function rsaPublic(der, alg, usage) {
  let k;
  try { k = await subtle().importKey('spki', der, alg, false, [usage]); } catch { err('ErrBadKey', 'not an RSA public key'); }
  const a = k.algorithm, e = a.publicExponent;
  const ok = e && e.length >= 3 && e.slice(0, -3).every(x => x === 0) && e[e.length - 3] === 1 && e[e.length - 2] === 0 && e[e.length - 1] === 1;
  if (!ok || ![2048, 3072, 4096].includes(a.modulusLength)) err('ErrBadKey', 'RSA key rule');
  return k;
}
async function verifyKey(d) { return d.verifyKey || (d.verifyKey = await rsaPublic(d.signingDer, { name: 'RSA-PSS', hash: 'SHA-256' }, 'verify')); }
async function encryptKey(d) { return d.encryptKey || (d.encryptKey = await rsaPublic(d.encryptionDer, { name: 'RSA-OAEP', hash: 'SHA-256' }, 'encrypt')); }
async function verify(d, sig, content) { return subtle().verify({ name: 'RSA-PSS', saltLength: 32 }, await verifyKey(d), sig, content); }

// ---- §5.1 record keys ----

function info(label, convId, version) { return concat(utf8(label), u8(0), convId, u32(version)); }
async function hkdf(k, label, convId, version) {
  const base = await subtle().importKey('raw', k, 'HKDF', false, ['deriveBits']);
  return bytes(await subtle().deriveBits({ name: 'HKDF', hash: 'SHA-256', salt: SALT, info: info(label, convId, version) }, base, 256));
}
/** recordKeyBytes returns the raw record keys of a key version (golden checks). */
export async function recordKeyBytes(k, convId, version, suite) {
  if (suite === SUITE_GCM) return { gcm_key: await hkdf(k, 'messenger v1 e2e gcm key', convId, version) };
  return { cbc_enc_key: await hkdf(k, 'messenger v1 e2e cbc enc key', convId, version), cbc_mac_key: await hkdf(k, 'messenger v1 e2e cbc mac key', convId, version) };
}
async function recordKeys(k, convId, version, suite) {
  const raw = await recordKeyBytes(k, convId, version, suite);
  if (suite === SUITE_GCM) return { gcm: await subtle().importKey('raw', raw.gcm_key, 'AES-GCM', false, ['encrypt', 'decrypt']) };
  return {
    enc: await subtle().importKey('raw', raw.cbc_enc_key, 'AES-CBC', false, ['encrypt', 'decrypt']),
    mac: await subtle().importKey('raw', raw.cbc_mac_key, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign', 'verify']),
  };
}

// ---- §4 key envelope ----

function readUser(r) { const b = r.vec8(); if (!userBytesOK(b)) err('ErrMalformed', 'invalid user name'); return fromUtf8(b); }
const rsaLen = n => n === 256 || n === 384 || n === 512;

/** parseEnvelope: §4.3 steps 1–9 (no cryptography). */
export function parseEnvelope(data) {
  if (data.length > MAX_ENVELOPE) err('ErrMalformed', 'too long');
  if (data.length < 1) err('ErrMalformed', 'empty');
  if (data[0] !== FORMAT) err('ErrUnsupportedFormat');
  const r = new Reader(data);
  try {
    r.u8();
    const convId = r.bytes(16), version = r.u32(), creatorUser = readUser(r), creatorDevice = r.bytes(16), created = r.u64(), suite = r.u16();
    if (suite !== SUITE_GCM && suite !== SUITE_CBC) err('ErrUnsupportedSuite');
    const digest = r.bytes(32), count = r.u8();
    if (count > MAX_RECIPIENTS) err('ErrTooManyRecipients');
    const stanzas = [];
    for (let i = 0; i < count; i++) {
      const ub = r.vec8();
      if (!userBytesOK(ub)) err('ErrMalformed', 'invalid user name');
      stanzas.push({ userBytes: ub, user: fromUtf8(ub), device: r.bytes(16), wrapped: r.vec16() });
    }
    const signedLen = r.offset;
    const sig = r.vec16();
    if (r.left) err('ErrMalformed', 'trailing bytes');
    if (version === 0 || count < 1 || !rsaLen(sig.length)) err('ErrMalformed', 'value out of range');
    const users = new Set();
    let creatorFound = false;
    for (let i = 0; i < stanzas.length; i++) {
      const s = stanzas[i];
      if (!rsaLen(s.wrapped.length)) err('ErrMalformed', 'wrapped length');
      if (i > 0) {
        const p = stanzas[i - 1];
        const c = compare(p.userBytes, s.userBytes);
        if (c > 0 || (c === 0 && compare(p.device, s.device) >= 0)) err('ErrMalformed', 'stanzas out of order');
      }
      users.add(s.user);
      if (s.user === creatorUser && equal(s.device, creatorDevice)) creatorFound = true;
    }
    if (users.size !== 2) err('ErrMalformed', 'not exactly two users');
    if (!creatorFound) err('ErrMalformed', 'no stanza for the creator');
    return { convId, version, creatorUser, creatorDevice: uuidString(creatorDevice), created, suite, digest, stanzas, users: [...users], signed: data.subarray(0, signedLen), sig, encoding: data };
  } catch (e) {
    if (e instanceof ShortError) err('ErrMalformed', 'short');
    throw e;
  }
}

/**
 * openEnvelope: §4.3 steps 10–13. me: {user, idBytes, decryptKey}; creator:
 * the device from the caller's pinned view. Returns a ConversationKey.
 */
export async function openEnvelope(env, convId, peer, creator, me) {
  if (creator.user !== env.creatorUser || creator.id !== env.creatorDevice) err('ErrWrongDevice');
  if (!await verify(creator, env.sig, signedContent('messenger v1 key envelope', await sha('SHA-256', env.signed)))) err('ErrBadSignature');
  const pair = [me.user, peer].sort();
  const eu = [...env.users].sort();
  if (!equal(env.convId, convId) || eu[0] !== pair[0] || eu[1] !== pair[1] || me.user === peer) err('ErrWrongConversation');
  const mine = env.stanzas.find(s => s.user === me.user && equal(s.device, me.idBytes));
  if (!mine) err('ErrNotARecipient');
  let k;
  try { k = bytes(await subtle().decrypt({ name: 'RSA-OAEP', label: LABEL_CONV_KEY }, me.decryptKey, mine.wrapped)); } catch { err('ErrUnwrap'); }
  if (k.length !== 32) err('ErrUnwrap');
  return conversationKey(env, k);
}

async function conversationKey(env, k) {
  return {
    convId: env.convId, version: env.version, suite: env.suite, digest: env.digest, users: env.users,
    recipients: new Set(env.stanzas.map(s => s.user + '/' + uuidString(s.device))),
    keys: await recordKeys(k, env.convId, env.version, env.suite),
    check: await sha('SHA-256', k), // to tell a second, different key for a version apart
    envelope: env.encoding,
  };
}

/**
 * newEnvelope makes key version `version` of conversation convId, wrapped
 * to every device in devices (both users, creator included), signed by me
 * ({user, id, idBytes, signKey}). Returns {encoding, key}.
 */
export async function newEnvelope(me, { convId, version, suite = SUITE_GCM, devices, createdMs = Date.now(), convKey = random(32) }) {
  if (devices.length > MAX_RECIPIENTS) err('ErrTooManyRecipients');
  groupUsers(devices);
  if (!devices.some(d => d.user === me.user && d.id === me.id)) err('ErrBadDevice', 'creator not among the devices');
  const digest = await deviceSetDigest(devices);
  const sorted = [...devices].sort((a, b) => compare(utf8(a.user), utf8(b.user)) || compare(a.idBytes, b.idBytes));
  const stanzas = [];
  for (const d of sorted) {
    const w = bytes(await subtle().encrypt({ name: 'RSA-OAEP', label: LABEL_CONV_KEY }, await encryptKey(d), convKey));
    stanzas.push(concat(vec8(utf8(d.user)), d.idBytes, vec16(w)));
  }
  const head = concat(u8(FORMAT), convId, u32(version), vec8(utf8(me.user)), me.idBytes, u64(createdMs), u16(suite), digest, u8(stanzas.length), ...stanzas);
  const sig = bytes(await subtle().sign({ name: 'RSA-PSS', saltLength: 32 }, me.signKey, signedContent('messenger v1 key envelope', await sha('SHA-256', head))));
  const encoding = concat(head, vec16(sig));
  const env = parseEnvelope(encoding);
  return { encoding, key: await conversationKey(env, convKey) };
}

/** Keyring: one conversation's keys by version (a different second key is ErrKeyConflict). */
export class Keyring {
  constructor(convId) { this.convId = convId; this.byVersion = new Map(); }
  add(key) {
    const have = this.byVersion.get(key.version);
    if (have) { if (!equal(have.check, key.check)) err('ErrKeyConflict'); return; }
    this.byVersion.set(key.version, key);
  }
  get(v) { return this.byVersion.get(v); }
  latest() { let best = null; for (const k of this.byVersion.values()) if (!best || k.version > best.version) best = k; return best; }
}

// ---- §5 records ----

function encodeHeader(h) {
  return concat(u8(FORMAT), h.convId, u32(h.version), vec8(utf8(h.sender)), h.senderDevice, vec8(utf8(h.recipient)), h.messageId, u64(h.counter), u64(h.timestampMs), u16(h.suite));
}
export { encodeHeader };

/**
 * sealRecord: §5.4. key: a ConversationKey; me: {user, id, idBytes, signKey};
 * out: {recipient, messageId (bytes), counter, text, timestampMs, iv?}.
 */
export async function sealRecord(key, me, out) {
  const text = utf8(out.text);
  if (text.length < 1 || text.length > MAX_PLAINTEXT) err('ErrBadPlaintext');
  if (!(out.counter > 0)) err('ErrMalformed', 'counter 0');
  const header = encodeHeader({ convId: key.convId, version: key.version, sender: me.user, senderDevice: me.idBytes, recipient: out.recipient, messageId: out.messageId, counter: out.counter, timestampMs: out.timestampMs ?? Date.now(), suite: key.suite });
  let iv, ct;
  if (key.suite === SUITE_GCM) {
    iv = out.iv || random(12);
    ct = bytes(await subtle().encrypt({ name: 'AES-GCM', iv, additionalData: header, tagLength: 128 }, key.keys.gcm, text));
  } else {
    iv = out.iv || random(16);
    const c = bytes(await subtle().encrypt({ name: 'AES-CBC', iv }, key.keys.enc, text));
    ct = concat(c, bytes(await subtle().sign('HMAC', key.keys.mac, concat(header, iv, c))));
  }
  const signed = concat(header, vec8(iv), vec16(ct));
  const sig = bytes(await subtle().sign({ name: 'RSA-PSS', saltLength: 32 }, me.signKey, signedContent('messenger v1 message', await sha('SHA-256', signed))));
  return concat(signed, vec16(sig));
}

/** parseRecord: §5.5 step 1. */
export function parseRecord(data) {
  if (data.length > MAX_RECORD) err('ErrMalformed', 'too long');
  if (data.length < 1) err('ErrMalformed', 'empty');
  if (data[0] !== FORMAT) err('ErrUnsupportedFormat');
  const r = new Reader(data);
  try {
    r.u8();
    const convId = r.bytes(16), version = r.u32(), sender = readUser(r), senderDevice = r.bytes(16), recipient = readUser(r);
    const messageId = r.bytes(16), counter = r.u64(), timestampMs = r.u64(), suite = r.u16();
    if (suite !== SUITE_GCM && suite !== SUITE_CBC) err('ErrUnsupportedSuite');
    const headerLen = r.offset;
    const iv = r.vec8(), ct = r.vec16();
    const signedLen = r.offset;
    const sig = r.vec16();
    if (r.left) err('ErrMalformed', 'trailing bytes');
    if (version === 0 || sender === recipient || counter === 0n) err('ErrMalformed', 'value out of range');
    if (iv.length !== (suite === SUITE_GCM ? 12 : 16) || !rsaLen(sig.length)) err('ErrMalformed', 'iv or signature length');
    const ctOK = suite === SUITE_GCM ? ct.length >= 17 && ct.length <= 16400 : ct.length >= 48 && ct.length <= 16432 && (ct.length - 32) % 16 === 0;
    if (!ctOK) err('ErrMalformed', 'ciphertext length');
    return {
      convId, version, sender, senderDevice: uuidString(senderDevice), recipient, messageId: uuidString(messageId), counter, timestampMs, suite,
      header: data.subarray(0, headerLen), iv, ct, signed: data.subarray(0, signedLen), sig,
    };
  } catch (e) {
    if (e instanceof ShortError) err('ErrMalformed', 'short');
    throw e;
  }
}

/**
 * ReplayGuard: §6. ids (the last 4096 accepted, per conversation) and the
 * highest counter per (conversation, sender, device, key version). toJSON /
 * fromJSON persist it.
 */
export class ReplayGuard {
  constructor() { this.ids = []; this.idSet = new Set(); this.counters = new Map(); }
  static fromJSON(j) { const g = new ReplayGuard(); if (j) { g.ids = j.ids || []; g.idSet = new Set(g.ids); g.counters = new Map(Object.entries(j.counters || {})); } return g; }
  toJSON() { return { ids: this.ids, counters: Object.fromEntries(this.counters) }; }
  ckey(conv, user, device, version) { return `${hex(conv)}|${user}|${device}|${version}`; }
  lastCounter(conv, user, device, version) { return BigInt(this.counters.get(this.ckey(conv, user, device, version)) || 0); }
  check(rec) {
    if (this.idSet.has(hex(rec.convId) + '|' + rec.messageId)) err('ErrReplay');
    if (rec.counter <= this.lastCounter(rec.convId, rec.sender, rec.senderDevice, rec.version)) err('ErrStaleCounter');
  }
  accept(rec) {
    const id = hex(rec.convId) + '|' + rec.messageId;
    this.ids.push(id); this.idSet.add(id);
    while (this.ids.length > MAX_IDS) this.idSet.delete(this.ids.shift());
    this.counters.set(this.ckey(rec.convId, rec.sender, rec.senderDevice, rec.version), rec.counter.toString());
  }
}

/**
 * openRecord: §5.5 steps 2–10. sender: the device of the caller's pinned
 * view; guard: a ReplayGuard, or null to re-read an accepted record.
 */
export async function openRecord(ring, rec, sender, guard) {
  if (sender.user !== rec.sender || sender.id !== rec.senderDevice) err('ErrWrongDevice');
  if (!await verify(sender, rec.sig, signedContent('messenger v1 message', await sha('SHA-256', rec.signed)))) err('ErrBadSignature');
  if (!equal(rec.convId, ring.convId)) err('ErrWrongConversation');
  const key = ring.get(rec.version);
  if (!key) err('ErrUnknownKeyVersion');
  if (!key.users.includes(rec.sender) || !key.users.includes(rec.recipient)) err('ErrNotARecipient');
  if (!key.recipients.has(rec.sender + '/' + rec.senderDevice)) err('ErrUnknownDevice');
  if (rec.suite !== key.suite) err('ErrSuiteMismatch');
  let pt;
  if (rec.suite === SUITE_GCM) {
    try { pt = bytes(await subtle().decrypt({ name: 'AES-GCM', iv: rec.iv, additionalData: rec.header, tagLength: 128 }, key.keys.gcm, rec.ct)); } catch { err('ErrBadAD'); }
  } else {
    const c = rec.ct.subarray(0, rec.ct.length - 32), tag = rec.ct.subarray(rec.ct.length - 32);
    if (!await subtle().verify('HMAC', key.keys.mac, tag, concat(rec.header, rec.iv, c))) err('ErrBadAD');
    try { pt = bytes(await subtle().decrypt({ name: 'AES-CBC', iv: rec.iv }, key.keys.enc, c)); } catch { err('ErrBadPlaintext', 'padding'); }
  }
  let text;
  if (pt.length < 1 || pt.length > MAX_PLAINTEXT) err('ErrBadPlaintext');
  try { text = fromUtf8(pt); } catch { err('ErrBadPlaintext', 'not UTF-8'); }
  if (guard) { guard.check(rec); guard.accept(rec); }
  return { text, sender: rec.sender, senderDevice: rec.senderDevice, messageId: rec.messageId, version: rec.version, counter: rec.counter, timestampMs: Number(rec.timestampMs) };
}
