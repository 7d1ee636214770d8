// The messenger wire protocol, version 1 (docs/protocol.md) with WebCrypto:
// handshake messages (§3), key schedule (§5), record layer (§6), error
// codes (§13).
import { Reader, ShortError, SerialQueue, bytes, concat, equal, random, u16, u32, u64, u8, utf8, vec16, vec8, fromUtf8 } from './bytes.js';

const subtle = () => crypto.subtle;

export const VERSION = 1;
export const SUITE_GCM = 0x0001;
export const SUITE_CBC = 0x0002;
export const SUITES = [SUITE_GCM, SUITE_CBC];
export const MAX_FRAME = 66560;
export const MAX_PLAINTEXT = 65536;
export const T = { CLIENT_HELLO: 0x01, SERVER_HELLO: 0x02, SERVER_VERIFY: 0x03, FINISHED: 0x04, ALERT: 0x15, RECORD: 0x17 };

/** CODES: the error codes of §13.2 by number. */
export const CODES = {
  1: 'unexpected_message', 2: 'malformed', 3: 'unsupported_version', 4: 'no_common_suite', 5: 'bad_signature',
  6: 'bad_finished', 7: 'handshake_timeout', 8: 'frame_too_large', 9: 'bad_record', 10: 'bad_sequence',
  11: 'session_unknown', 12: 'replayed_id', 13: 'stale_timestamp', 14: 'slow_consumer', 15: 'internal',
  16: 'bad_key', 17: 'bad_request', 18: 'too_large', 19: 'unavailable', 20: 'going_away', 21: 'session_ended',
  22: 'auth_failed', 23: 'rate_limited', 24: 'conflict', 25: 'unauthenticated', 26: 'not_found',
  27: 'session_revoked', 28: 'limit_reached',
};
export const CODE = Object.fromEntries(Object.entries(CODES).map(([n, name]) => [name, Number(n)]));
export function codeName(n) { return CODES[n] || `code_${n}`; }

/**
 * ProtocolError carries a protocol error code. sealed is true only for an
 * encrypted `error` message (the server's authenticated word, §13.1).
 */
export class ProtocolError extends Error {
  constructor(code, message, { fatal = true, sealed = false, ref } = {}) {
    super(message || codeName(code));
    this.code = code; this.name = codeName(code); this.fatal = fatal; this.sealed = sealed; this.ref = ref;
  }
}
const fail = (code, msg) => { throw new ProtocolError(code, msg); };

// ---- handshake messages (§3) ----

/** encodeClientHello builds a ClientHello (§3.1). */
export function encodeClientHello({ random: rnd, suites, sessionKey, resumeId }) {
  const s = concat(...suites.map(u16));
  return concat(u8(T.CLIENT_HELLO), u16(VERSION), rnd, vec8(s), vec16(sessionKey || new Uint8Array(0)), vec8(resumeId || new Uint8Array(0)));
}

function structured(fn) {
  try { return fn(); } catch (e) { if (e instanceof ShortError) fail(CODE.malformed, 'short handshake message'); throw e; }
}

/** parseServerHello decodes and structure-checks a ServerHello (§3.2, checks 2–5). */
export function parseServerHello(frame) {
  return structured(() => {
    const r = new Reader(frame);
    if (r.u8() !== T.SERVER_HELLO) fail(CODE.unexpected_message, 'expected ServerHello');
    const version = r.u16(), rnd = r.bytes(32), suite = r.u16(), flags = r.u8(), sessionId = r.bytes(16);
    const identityKey = r.vec16(), wrapped = r.vec16();
    if (r.left) fail(CODE.malformed, 'trailing bytes in ServerHello');
    if (flags & ~1) fail(CODE.malformed, 'unknown ServerHello flags');
    if (identityKey.length < 1 || identityKey.length > 2048) fail(CODE.bad_key, 'identity key size');
    const resumed = (flags & 1) === 1;
    if ((wrapped.length === 0) !== resumed) fail(CODE.malformed, 'wrapped secret and resumed flag disagree');
    return { version, random: rnd, suite, resumed, sessionId, identityKey, wrapped };
  });
}

/** parseServerVerify returns the signature of a ServerVerify (§3.3). */
export function parseServerVerify(frame) {
  return structured(() => {
    const r = new Reader(frame);
    if (r.u8() !== T.SERVER_VERIFY) fail(CODE.unexpected_message, 'expected ServerVerify');
    const sig = r.vec16();
    if (r.left || sig.length === 0) fail(CODE.malformed, 'bad ServerVerify');
    return sig;
  });
}

export function encodeFinished(verify) { return concat(u8(T.FINISHED), verify); }
export function parseFinished(frame) {
  if (frame[0] !== T.FINISHED) fail(CODE.unexpected_message, 'expected Finished');
  if (frame.length !== 33) fail(CODE.malformed, 'Finished is not 33 bytes');
  return frame.subarray(1);
}

/** encodeAlert / parseAlert: §3.5. A bad Alert is malformed. */
export function encodeAlert(code, reason = '') {
  let rb = utf8(reason);
  if (rb.length > 256) rb = rb.subarray(0, 256);
  return concat(u8(T.ALERT), u16(code), vec16(rb));
}
export function parseAlert(frame) {
  return structured(() => {
    const r = new Reader(frame);
    if (r.u8() !== T.ALERT) fail(CODE.unexpected_message, 'not an alert');
    const code = r.u16(), rb = r.vec16();
    if (r.left || rb.length > 256) fail(CODE.malformed, 'bad alert');
    let reason;
    try { reason = fromUtf8(rb); } catch { fail(CODE.malformed, 'alert reason is not UTF-8'); }
    return { code, reason };
  });
}

// ---- RSA key rule (§3.1): exponent 65537, modulus 2048/3072/4096 ----

/** importRSAPublic imports PKIX DER following the RSA key rule, or throws ProtocolError(bad_key). */
export async function importRSAPublic(der, algorithm, usages) {
  let key;
  try { key = await subtle().importKey('spki', der, algorithm, true, usages); } catch { fail(CODE.bad_key, 'not an RSA public key'); }
  checkRSAKey(key);
  return key;
}
export function checkRSAKey(key) {
  const a = key.algorithm;
  const e = a.publicExponent;
  const e65537 = e && e.length >= 3 && e.slice(0, e.length - 3).every(x => x === 0) && e[e.length - 3] === 1 && e[e.length - 2] === 0 && e[e.length - 1] === 1;
  if (!e65537 || ![2048, 3072, 4096].includes(a.modulusLength)) fail(CODE.bad_key, 'RSA key breaks the key rule');
}

export const PSS = { name: 'RSA-PSS', hash: 'SHA-256' };
export const OAEP = { name: 'RSA-OAEP', hash: 'SHA-256' };

/** signedContent: 0x20×64 ‖ context ‖ 0x00 ‖ digest (§4.3, §10). */
export function signedContent(context, digest) {
  return concat(new Uint8Array(64).fill(0x20), utf8(context), u8(0), digest);
}
export async function sha256(...parts) { return bytes(await subtle().digest('SHA-256', concat(...parts))); }
export async function hmac(key, data) {
  const k = await subtle().importKey('raw', key, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
  return bytes(await subtle().sign('HMAC', k, data));
}
export async function pssSign(priv, content) { return bytes(await subtle().sign({ name: 'RSA-PSS', saltLength: 32 }, priv, content)); }
export async function pssVerify(pub, sig, content) { return subtle().verify({ name: 'RSA-PSS', saltLength: 32 }, pub, sig, content); }

// ---- key schedule (§5) ----

const EXTRACT_SALT = utf8('messenger v1 extract');

/** importSecret makes the 32-byte session secret a non-extractable HKDF key. */
export async function importSecret(secret) {
  return subtle().importKey('raw', secret, 'HKDF', false, ['deriveBits']);
}

/** expand: HKDF-Expand(master, "messenger v1 " ‖ label ‖ 0x00 ‖ th, n), by HKDF over the secret. */
export async function expand(secretKey, label, th, n) {
  const info = concat(utf8('messenger v1 ' + label), u8(0), th);
  return bytes(await subtle().deriveBits({ name: 'HKDF', hash: 'SHA-256', salt: EXTRACT_SALT, info }, secretKey, n * 8));
}

/** master = HKDF-Extract (only for checking against the golden file). */
export async function extractMaster(secret) { return hmac(EXTRACT_SALT, secret); }

/** finishedMAC: HMAC(Expand(label, TH_keys, 32), th) (§5.3). */
export async function finishedMAC(secretKey, label, thKeys, th) {
  return hmac(await expand(secretKey, label, thKeys, 32), th);
}

// ---- record layer (§6) ----

async function recordKeys(secretKey, suite, dir, thKeys) {
  if (suite === SUITE_GCM) {
    const key = await expand(secretKey, dir + ' key', thKeys, 32);
    const iv = await expand(secretKey, dir + ' iv', thKeys, 12);
    return { suite, key: await subtle().importKey('raw', key, 'AES-GCM', false, ['encrypt', 'decrypt']), iv };
  }
  if (suite === SUITE_CBC) {
    const km = await expand(secretKey, dir + ' key', thKeys, 64);
    return {
      suite,
      enc: await subtle().importKey('raw', km.subarray(0, 32), 'AES-CBC', false, ['encrypt', 'decrypt']),
      mac: await subtle().importKey('raw', km.subarray(32), { name: 'HMAC', hash: 'SHA-256' }, false, ['sign', 'verify']),
    };
  }
  fail(CODE.no_common_suite, 'unknown suite');
}

function header(seq) { return concat(u8(T.RECORD), u64(seq)); }
function gcmNonce(iv, seq) {
  const n = iv.slice();
  const s = u64(seq);
  for (let i = 0; i < 8; i++) n[4 + i] ^= s[i];
  return n;
}
const LAST_SEQ = (1n << 64n) - 2n;

/**
 * RecordLayer holds one direction's keys and sequence number. seal and open
 * are serialised through a queue: WebCrypto is async, and two records
 * sealed concurrently would otherwise get their numbers out of order.
 */
export class RecordLayer {
  constructor(keys) { this.k = keys; this.seq = 0n; this.q = new SerialQueue(); }

  /** fromKeys builds a layer from raw key bytes (tests, golden vectors). */
  static async fromRaw(suite, keyBytes, iv) {
    if (suite === SUITE_GCM) return new RecordLayer({ suite, key: await subtle().importKey('raw', keyBytes, 'AES-GCM', false, ['encrypt', 'decrypt']), iv });
    return new RecordLayer({
      suite,
      enc: await subtle().importKey('raw', keyBytes.subarray(0, 32), 'AES-CBC', false, ['encrypt', 'decrypt']),
      mac: await subtle().importKey('raw', keyBytes.subarray(32), { name: 'HMAC', hash: 'SHA-256' }, false, ['sign', 'verify']),
    });
  }
  static async derive(secretKey, suite, dir, thKeys) { return new RecordLayer(await recordKeys(secretKey, suite, dir, thKeys)); }

  /** seal returns the next record frame for plaintext (fixedIV only for test vectors). */
  seal(plaintext, fixedIV) {
    return this.q.run(async () => {
      if (plaintext.length > MAX_PLAINTEXT) fail(CODE.frame_too_large, 'plaintext too large');
      if (this.seq > LAST_SEQ) fail(CODE.bad_sequence, 'sequence numbers exhausted');
      const seq = this.seq++;
      const h = header(seq);
      if (this.k.suite === SUITE_GCM) {
        const ct = bytes(await subtle().encrypt({ name: 'AES-GCM', iv: gcmNonce(this.k.iv, seq), additionalData: h, tagLength: 128 }, this.k.key, plaintext));
        return concat(h, ct);
      }
      const iv = fixedIV || random(16);
      const c = bytes(await subtle().encrypt({ name: 'AES-CBC', iv }, this.k.enc, plaintext));
      const tag = bytes(await subtle().sign('HMAC', this.k.mac, concat(h, iv, c)));
      return concat(h, iv, c, tag);
    });
  }

  /** open checks type, size, sequence number, then authenticates (§6.4). */
  open(frame) {
    return this.q.run(async () => {
      if (frame.length > MAX_FRAME) fail(CODE.frame_too_large, 'frame too large');
      if (frame.length === 0) fail(CODE.malformed, 'empty frame');
      if (frame[0] === T.ALERT) {
        const a = parseAlert(frame);
        throw new ProtocolError(a.code, a.reason || codeName(a.code), { sealed: false });
      }
      if (frame[0] !== T.RECORD) fail(CODE.malformed, 'not a record');
      if (frame.length < 9) fail(CODE.malformed, 'short record');
      const seq = new DataView(frame.buffer, frame.byteOffset + 1, 8).getBigUint64(0, false);
      if (seq !== this.seq) fail(CODE.bad_sequence, `record ${seq}, expected ${this.seq}`);
      const h = frame.subarray(0, 9), body = frame.subarray(9);
      let pt;
      if (this.k.suite === SUITE_GCM) {
        try { pt = bytes(await subtle().decrypt({ name: 'AES-GCM', iv: gcmNonce(this.k.iv, seq), additionalData: h, tagLength: 128 }, this.k.key, body)); } catch { fail(CODE.bad_record, 'record does not authenticate'); }
      } else {
        if (body.length < 64 || (body.length - 32) % 16 !== 0) fail(CODE.bad_record, 'bad record length');
        const iv = body.subarray(0, 16), c = body.subarray(16, body.length - 32), tag = body.subarray(body.length - 32);
        if (!await subtle().verify('HMAC', this.k.mac, tag, concat(h, iv, c))) fail(CODE.bad_record, 'record does not authenticate');
        try { pt = bytes(await subtle().decrypt({ name: 'AES-CBC', iv }, this.k.enc, c)); } catch { fail(CODE.bad_record, 'bad padding'); }
      }
      if (pt.length > MAX_PLAINTEXT) fail(CODE.frame_too_large, 'plaintext too large');
      this.seq++;
      return pt;
    });
  }
}

/** fingerprint: SHA-256 of the identity key's DER, 64 hex digits (§4.5). */
export async function fingerprint(der) {
  const h = await sha256(der);
  return Array.from(h, x => x.toString(16).padStart(2, '0')).join('');
}
/** normalizeFingerprint accepts colons and spaces between digits. */
export function normalizeFingerprint(s) {
  const f = String(s || '').toLowerCase().replace(/[:\s]/g, '');
  return /^[0-9a-f]{64}$/.test(f) ? f : null;
}

/** keyPossessionProof: §10.4. */
export async function keyPossessionProof(challenge, exporter, user, encryptionDer) {
  const ub = utf8(user);
  return hmac(challenge, concat(utf8('messenger v1 key possession proof'), u8(0), exporter, u32(ub.length), ub, u32(encryptionDer.length), encryptionDer));
}

/** connectionSignature: §10.2, signing exporter ‖ 0x00 ‖ user. */
export async function connectionSignature(signingKey, exporter, user) {
  const digest = await sha256(exporter, u8(0), utf8(user));
  return pssSign(signingKey, signedContent('messenger v1 client auth', digest));
}

export { random, equal };
