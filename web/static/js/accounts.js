// Devices and accounts (docs/protocol.md §10): a browser is a device of
// its own with two RSA key pairs whose private halves are non-extractable
// WebCrypto keys kept in IndexedDB.
import { b64, bytes, concat, newUUID, u32, u8, unb64, utf8, hex, equal } from './bytes.js';
import { CODE, ProtocolError, connectionSignature, keyPossessionProof, pssSign, pssVerify, sha256, signedContent } from './protocol.js';
import { deviceFingerprint, makeDevice, userFingerprint } from './e2e.js';

export const DEVICE_BITS = 3072;
const gen = (name, usages) => crypto.subtle.generateKey({ name, modulusLength: DEVICE_BITS, publicExponent: Uint8Array.of(1, 0, 1), hash: 'SHA-256' }, false, usages);

/** generateDevice makes a new device for user: keys, id and the version-2 self-signature. */
export async function generateDevice(user) {
  const [sign, enc] = await Promise.all([gen('RSA-PSS', ['sign', 'verify']), gen('RSA-OAEP', ['encrypt', 'decrypt'])]);
  const id = newUUID();
  const signingDer = bytes(await crypto.subtle.exportKey('spki', sign.publicKey));
  const encryptionDer = bytes(await crypto.subtle.exportKey('spki', enc.publicKey));
  const d = await makeDevice({ user, id, signingDer, encryptionDer });
  const selfSig = await pssSign(sign.privateKey, signedContent('messenger v2 key bundle', d.fp));
  return { ...d, signKey: sign.privateKey, decryptKey: enc.privateKey, selfSig };
}

/** bundle is the JSON key bundle of §10.1. */
export function bundle(dev) {
  return { device: dev.id, signing: b64(dev.signingDer), encryption: b64(dev.encryptionDer), self_sig: b64(dev.selfSig) };
}

/** storable / restore: what of a device goes into IndexedDB. */
export function storable(dev) {
  const { user, id, signingDer, encryptionDer, signKey, decryptKey, selfSig, name } = dev;
  return { user, id, signingDer, encryptionDer, signKey, decryptKey, selfSig, name };
}
export async function restore(s) { return { ...s, ...(await makeDevice(s)), signKey: s.signKey, decryptKey: s.decryptKey, selfSig: s.selfSig }; }

/** verifyListed checks a listed device (self-signature version 2, or 1 for an upgraded one) and its fingerprint. */
export async function verifyListed(user, entry) {
  const k = entry.keys;
  const d = await makeDevice({ user, id: k.device, signingDer: unb64(k.signing), encryptionDer: unb64(k.encryption) });
  let pub;
  try { pub = await crypto.subtle.importKey('spki', d.signingDer, { name: 'RSA-PSS', hash: 'SHA-256' }, false, ['verify']); } catch { throw new ProtocolError(CODE.bad_key, `${user}: a device key does not parse`, { fatal: false }); }
  const sig = unb64(k.self_sig);
  let ok = await pssVerify(pub, sig, signedContent('messenger v2 key bundle', d.fp));
  if (!ok) {
    const ub = utf8(user);
    const v1 = await sha256(u32(ub.length), ub, u32(d.signingDer.length), d.signingDer, u32(d.encryptionDer.length), d.encryptionDer);
    ok = await pssVerify(pub, sig, signedContent('messenger v1 key bundle', v1));
  }
  if (!ok) throw new ProtocolError(CODE.bad_signature, `${user}: a device's self-signature does not verify`, { fatal: false });
  if (entry.fingerprint && entry.fingerprint !== hex(d.fp)) throw new ProtocolError(CODE.bad_signature, `${user}: a device fingerprint does not match its keys`, { fatal: false });
  d.name = entry.name || '';
  d.created = entry.created;
  return d;
}

/** lookup asks the directory for user's devices and checks every bundle and both fingerprints. */
export async function lookup(conn, user) {
  const r = await conn.request({ t: 'lookup', user });
  const devices = [];
  for (const e of r.devices || []) devices.push(await verifyListed(user, e));
  const ufp = await userFingerprint(user, devices.map(d => d.fp));
  if (r.fingerprint && r.fingerprint !== hex(ufp)) throw new ProtocolError(CODE.bad_signature, `${user}: the user fingerprint does not match the devices`, { fatal: false });
  return { user, devices, fingerprint: ufp };
}

/** proveKey runs key_challenge for dev's encryption key and returns the proof of §10.4. */
async function proveKey(conn, dev, user) {
  const c = await conn.request({ t: 'key_challenge', key: b64(dev.encryptionDer) });
  let challenge;
  try { challenge = bytes(await crypto.subtle.decrypt({ name: 'RSA-OAEP', label: utf8('messenger v1 key possession') }, dev.decryptKey, unb64(c.wrapped))); } catch { throw new ProtocolError(CODE.bad_key, 'cannot open the key challenge', { fatal: false }); }
  if (challenge.length !== 32) throw new ProtocolError(CODE.bad_key, 'key challenge is not 32 bytes', { fatal: false });
  return b64(await keyPossessionProof(challenge, conn.exporter, user, dev.encryptionDer));
}

const sig = async (conn, dev, user) => b64(await connectionSignature(dev.signKey, conn.exporter, user));

/** register creates the account with dev as its first device. */
export async function register(conn, dev, user, password, deviceName) {
  const proof = await proveKey(conn, dev, user);
  const m = { t: 'register', user, password, keys: bundle(dev), sig: await sig(conn, dev, user), proof };
  if (deviceName) m.device_name = deviceName;
  return conn.request(m);
}

/** loginNewDevice logs in with the password and adds dev as a new device. */
export async function loginNewDevice(conn, dev, user, password, deviceName) {
  const proof = await proveKey(conn, dev, user);
  const m = { t: 'login', user, password, keys: bundle(dev), sig: await sig(conn, dev, user), proof };
  if (deviceName) m.device_name = deviceName;
  return conn.request(m);
}

/** login checks the password with an existing device of this browser. */
export async function login(conn, dev, user, password) {
  return conn.request({ t: 'login', user, password, device: dev.id, sig: await sig(conn, dev, user) });
}

/** auth logs in by signature alone (every later connection). */
export async function auth(conn, dev, user) {
  return conn.request({ t: 'auth', user, device: dev.id, sig: await sig(conn, dev, user) });
}
