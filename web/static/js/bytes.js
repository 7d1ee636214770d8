// Byte helpers shared by the protocol, the end-to-end format and the UI:
// big-endian integers, length-prefixed vectors, hex, base64, UTF-8 and
// UUIDs, all on Uint8Array.

const enc = new TextEncoder();

/** utf8 encodes a string as UTF-8 bytes. */
export function utf8(s) { return enc.encode(s); }

/** fromUtf8 decodes UTF-8; with fatal it throws on invalid bytes. */
export function fromUtf8(b, fatal = true) { return new TextDecoder('utf-8', { fatal }).decode(b); }

/** concat joins byte arrays. */
export function concat(...parts) {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) { out.set(p, o); o += p.length; }
  return out;
}

export function u8(n) { return Uint8Array.of(n & 0xff); }
export function u16(n) { return Uint8Array.of((n >>> 8) & 0xff, n & 0xff); }
export function u32(n) { const b = new Uint8Array(4); new DataView(b.buffer).setUint32(0, n, false); return b; }
export function u64(n) { const b = new Uint8Array(8); new DataView(b.buffer).setBigUint64(0, BigInt(n), false); return b; }

/** vec8 / vec16 prefix bytes with their 1- or 2-byte length. */
export function vec8(b) { if (b.length > 0xff) throw new RangeError('vector too long'); return concat(u8(b.length), b); }
export function vec16(b) { if (b.length > 0xffff) throw new RangeError('vector too long'); return concat(u16(b.length), b); }

export function hex(b) { return Array.from(b, x => x.toString(16).padStart(2, '0')).join(''); }
export function unhex(s) {
  if (s.length % 2 !== 0 || /[^0-9a-fA-F]/.test(s)) throw new Error('bad hex');
  const out = new Uint8Array(s.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(s.substr(i * 2, 2), 16);
  return out;
}

/** b64 writes standard, padded base64 (what the server's JSON carries). */
export function b64(b) {
  let s = '';
  for (let i = 0; i < b.length; i += 0x8000) s += String.fromCharCode.apply(null, b.subarray(i, i + 0x8000));
  return btoa(s);
}
/** unb64 reads standard, padded base64 and refuses anything else. */
export function unb64(s) {
  if (typeof s !== 'string' || s.length % 4 !== 0 || /[^A-Za-z0-9+/=]/.test(s)) throw new Error('bad base64');
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

/** equal compares in time independent of where the bytes differ. */
export function equal(a, b) {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a[i] ^ b[i];
  return d === 0;
}

/** compare orders byte strings: byte-wise, a prefix before what it prefixes. */
export function compare(a, b) {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return a.length - b.length;
}

export function bytes(buf) { return buf instanceof Uint8Array ? buf : new Uint8Array(buf); }

export function random(n) { return crypto.getRandomValues(new Uint8Array(n)); }

const uuidRe = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
/** isUUID: canonical lower-case form. */
export function isUUID(s) { return typeof s === 'string' && uuidRe.test(s); }
export function uuidBytes(s) { if (!isUUID(s)) throw new Error('bad uuid ' + s); return unhex(s.replace(/-/g, '')); }
export function uuidString(b) {
  const h = hex(b);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}
/** newUUID is a random version-4 UUID in canonical lower-case form. */
export function newUUID() { return crypto.randomUUID(); }

/** ShortError is thrown by Reader on a read past the end. */
export class ShortError extends Error {}

/** Reader reads big-endian fields from bytes, throwing ShortError on a short read. */
export class Reader {
  constructor(b) { this.b = b; this.o = 0; this.dv = new DataView(b.buffer, b.byteOffset, b.byteLength); }
  need(n) { if (this.o + n > this.b.length) throw new ShortError('short read'); }
  u8() { this.need(1); return this.b[this.o++]; }
  u16() { this.need(2); const v = this.dv.getUint16(this.o, false); this.o += 2; return v; }
  u32() { this.need(4); const v = this.dv.getUint32(this.o, false); this.o += 4; return v; }
  u64() { this.need(8); const v = this.dv.getBigUint64(this.o, false); this.o += 8; return v; }
  bytes(n) { this.need(n); const v = this.b.subarray(this.o, this.o + n); this.o += n; return v; }
  vec8() { return this.bytes(this.u8()); }
  vec16() { return this.bytes(this.u16()); }
  rest() { return this.bytes(this.b.length - this.o); }
  get left() { return this.b.length - this.o; }
  get offset() { return this.o; }
}

/** SerialQueue runs async jobs strictly one after another, in order. */
export class SerialQueue {
  constructor() { this.tail = Promise.resolve(); }
  run(job) {
    const p = this.tail.then(job);
    this.tail = p.catch(() => {});
    return p;
  }
}
