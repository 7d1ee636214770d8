// Golden-vector checks run inside the page: web/static/js against
// pkg/protocol/testdata/golden and pkg/e2e/testdata/golden (docs/e2e.md §9).
import fs from 'node:fs';
import path from 'node:path';

/** loadVectors reads the golden files for the page. */
export function loadVectors(root) {
  const p = f => fs.readFileSync(path.join(root, f), 'utf8');
  const kv = txt => Object.fromEntries(txt.split('\n').filter(l => l && !l.startsWith('#')).map(l => { const i = l.indexOf(':'); return [l.slice(0, i).trim(), l.slice(i + 1).trim()]; }));
  const e2e = JSON.parse(p('pkg/e2e/testdata/golden/e2e_vectors.json'));
  const keys = {};
  for (const d of e2e.devices) {
    keys[d.name] = { signing: p('pkg/e2e/' + d.signing_private_key_file), encryption: p('pkg/e2e/' + d.encryption_private_key_file) };
  }
  return {
    schedule: kv(p('pkg/protocol/testdata/golden/key_schedule.txt')),
    possession: kv(p('pkg/protocol/testdata/golden/key_possession.txt')),
    hex: Object.fromEntries(['client_hello', 'client_hello_resume', 'server_hello', 'server_hello_resumed', 'server_verify', 'finished', 'alert'].map(n => [n, p(`pkg/protocol/testdata/golden/${n}.hex`).split('\n').filter(l => !l.startsWith('#')).join('')])),
    e2e, keys,
  };
}

/** check runs in the page; it returns a list of mismatches (empty: all good) and counts. */
export async function check(v) {
  const B = await import('/js/bytes.js');
  const P = await import('/js/protocol.js');
  const E = await import('/js/e2e.js');
  const bad = [];
  let n = 0;
  const eq = (name, got, want) => { n++; if (got !== want) bad.push(`${name}: got ${got}, want ${want}`); };
  const h = B.hex, u = B.unhex;
  const clean = s => s.replace(/\s+/g, '');

  // --- protocol: handshake encodings ---
  const rnd = u('000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f');
  eq('client_hello', h(P.encodeClientHello({ random: rnd, suites: [1, 2], sessionKey: B.utf8('session-key-der') })), clean(v.hex.client_hello));
  eq('client_hello_resume', h(P.encodeClientHello({ random: rnd, suites: [1], resumeId: u('404142434445464748494a4b4c4d4e4f') })), clean(v.hex.client_hello_resume));
  const sh = P.parseServerHello(u(clean(v.hex.server_hello)));
  eq('server_hello suite', sh.suite, 1); eq('server_hello key', B.fromUtf8(sh.identityKey), 'identity-key-der'); eq('server_hello wrapped', B.fromUtf8(sh.wrapped), 'wrapped-secret');
  const shr = P.parseServerHello(u(clean(v.hex.server_hello_resumed)));
  eq('server_hello_resumed', shr.resumed && shr.suite === 2 && shr.wrapped.length === 0, true);
  eq('server_verify', B.fromUtf8(P.parseServerVerify(u(clean(v.hex.server_verify)))), 'signature');
  eq('finished', h(P.parseFinished(u(clean(v.hex.finished)))), '606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f');
  const al = P.parseAlert(u(clean(v.hex.alert)));
  eq('alert', `${al.code} ${al.reason}`, '6 bad finished');
  eq('alert encode', h(P.encodeAlert(6, 'bad finished')), clean(v.hex.alert));

  // --- protocol: key schedule ---
  const s = v.schedule;
  const secret = u(s.secret);
  const sk = await P.importSecret(secret);
  const th = { keys: u(s.transcript_after_server_hello), sfin: u(s.transcript_before_server_finished), cfin: u(s.transcript_before_client_finished), full: u(s.transcript_full) };
  eq('master', h(await P.extractMaster(secret)), s.master);
  eq('c2s_key', h(await P.expand(sk, 'c2s key', th.keys, 32)), s.c2s_key);
  eq('c2s_iv', h(await P.expand(sk, 'c2s iv', th.keys, 12)), s.c2s_iv);
  eq('s2c_key', h(await P.expand(sk, 's2c key', th.keys, 32)), s.s2c_key);
  eq('s2c_iv', h(await P.expand(sk, 's2c iv', th.keys, 12)), s.s2c_iv);
  eq('c2s_cbc', h(await P.expand(sk, 'c2s key', th.keys, 64)), s.c2s_cbc_enc_mac_keys);
  eq('s2c_cbc', h(await P.expand(sk, 's2c key', th.keys, 64)), s.s2c_cbc_enc_mac_keys);
  eq('server_finished', h(await P.finishedMAC(sk, 'server finished', th.keys, th.sfin)), s.server_finished);
  eq('client_finished', h(await P.finishedMAC(sk, 'client finished', th.keys, th.cfin)), s.client_finished);
  eq('exporter', h(await P.expand(sk, 'exporter', th.full, 32)), s.exporter);
  const pt = u(s.record_plaintext);
  for (const dir of ['c2s', 's2c']) {
    const seal = await P.RecordLayer.derive(sk, 1, dir, th.keys);
    const open = await P.RecordLayer.derive(sk, 1, dir, th.keys);
    for (const i of [0, 1]) {
      const f = await seal.seal(pt);
      eq(`${dir}_gcm_record_${i}`, h(f), s[`${dir}_gcm_record_${i}`]);
      eq(`${dir} open ${i}`, h(await open.open(f)), s.record_plaintext);
    }
  }
  // Concurrent seals come out numbered in call order, and open in order.
  {
    const seal = await P.RecordLayer.derive(sk, 2, 'c2s', th.keys), open = await P.RecordLayer.derive(sk, 2, 'c2s', th.keys);
    const frames = await Promise.all([0, 1, 2, 3, 4].map(i => seal.seal(B.utf8('m' + i))));
    const texts = await Promise.all(frames.map(f => open.open(f)));
    eq('serialised cbc seals', texts.map(t => B.fromUtf8(t)).join(','), 'm0,m1,m2,m3,m4');
    let code = 0;
    try { await open.open(frames[0]); } catch (e) { code = e.code; }
    eq('replayed record is bad_sequence', code, 10);
  }
  // The CBC record of docs/protocol.md §5.5.
  {
    const l = await P.RecordLayer.fromRaw(2, u(s.c2s_cbc_enc_mac_keys));
    const f = await l.seal(pt, u('a0a1a2a3a4a5a6a7a8a9aaabacadaeaf'));
    eq('cbc record', h(f), '170000000000000000a0a1a2a3a4a5a6a7a8a9aaabacadaeaf9f94ff6080c98b44c661e51345d440c069daff1cecf50d7c995b6945767e159673d4610e02e8484644256dc102c8d841');
  }
  const kp = v.possession;
  eq('key possession proof', h(await P.keyPossessionProof(u(kp.challenge), u(kp.exporter), 'alice', u(kp.encryption))), kp.proof);

  // --- e2e ---
  const g = v.e2e;
  const pem = t => B.unb64(t.replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''));
  const devs = {};
  for (const d of g.devices) {
    const dev = await E.makeDevice({ user: d.user, id: d.id, signingDer: u(d.signing_public_key), encryptionDer: u(d.encryption_public_key) });
    eq(`fingerprint ${d.name}`, h(dev.fp), d.fingerprint);
    dev.name = d.name;
    dev.signKey = await crypto.subtle.importKey('pkcs8', pem(v.keys[d.name].signing), { name: 'RSA-PSS', hash: 'SHA-256' }, false, ['sign']);
    dev.decryptKey = await crypto.subtle.importKey('pkcs8', pem(v.keys[d.name].encryption), { name: 'RSA-OAEP', hash: 'SHA-256' }, false, ['decrypt']);
    devs[d.name] = dev;
  }
  for (const uf of g.user_fingerprints) {
    eq(`user fp ${uf.user}`, h(await E.userFingerprint(uf.user, uf.devices.map(n => devs[n].fp))), uf.fingerprint);
  }
  for (const ds of g.device_sets) eq(`device set ${ds.devices}`, h(await E.deviceSetDigest(ds.devices.map(n => devs[n]))), ds.digest);
  const sn = g.safety_number;
  eq('safety number', await E.safetyNumber(u(sn.user_fingerprints[0]), u(sn.user_fingerprints[1])), sn.number);
  const conv = B.uuidBytes(g.conversation);
  const peerOf = d => (d.user === 'alice' ? 'bob' : 'alice');
  const byName = Object.fromEntries(g.envelopes.map(e => [e.name, e]));
  for (const env of g.envelopes) {
    const keys = await E.recordKeyBytes(u(env.conversation_key), conv, env.key_version, env.suite);
    for (const [k, want] of Object.entries(env.record_keys)) eq(`${env.name} ${k}`, h(keys[k]), want);
    for (const [dn, want] of Object.entries(env.results)) {
      let got = 'ok';
      try {
        const p = E.parseEnvelope(u(env.encoding));
        const key = await E.openEnvelope(p, conv, peerOf(devs[dn]), devs[env.creator], devs[dn]);
        eq(`${env.name} key for ${dn}`, h(key.check), h(new Uint8Array(await crypto.subtle.digest('SHA-256', u(env.conversation_key)))));
      } catch (e) { got = e.name; }
      eq(`${env.name} opened by ${dn}`, got, want);
    }
  }
  async function ringFor(d) {
    const ring = new E.Keyring(conv);
    for (const env of g.envelopes) {
      try { ring.add(await E.openEnvelope(E.parseEnvelope(u(env.encoding)), conv, peerOf(d), devs[env.creator], d)); } catch (e) { if (e.name !== 'ErrNotARecipient') throw e; }
    }
    return ring;
  }
  const rings = {};
  for (const d of Object.values(devs)) if (d.user !== 'carol') rings[d.name] = await ringFor(d);
  const recs = Object.fromEntries(g.records.map(r => [r.name, r]));
  for (const r of g.records) {
    const env = byName[r.envelope];
    const snd = devs[r.sender];
    const header = E.encodeHeader({ convId: conv, version: env.key_version, sender: snd.user, senderDevice: snd.idBytes, recipient: r.recipient, messageId: B.uuidBytes(r.message_id), counter: BigInt(r.counter), timestampMs: BigInt(r.timestamp_ms), suite: env.suite });
    eq(`${r.name} header`, h(header), r.header);
    // Re-seal with the golden IV: header and ciphertext match byte for byte.
    const key = rings[r.sender].get(env.key_version);
    const sealed = E.parseRecord(await E.sealRecord(key, snd, { recipient: r.recipient, messageId: B.uuidBytes(r.message_id), counter: BigInt(r.counter), timestampMs: BigInt(r.timestamp_ms), text: r.text, iv: u(r.iv) }));
    eq(`${r.name} ciphertext`, h(sealed.ct), r.ciphertext);
    for (const [dn, want] of Object.entries(r.results)) {
      let got = 'ok';
      try {
        const rec = E.parseRecord(u(r.encoding));
        const m = await E.openRecord(rings[dn], rec, devs[rec.sender === snd.user ? r.sender : r.sender], new E.ReplayGuard());
        eq(`${r.name} text for ${dn}`, m.text, r.text);
      } catch (e) { got = e.name; }
      eq(`${r.name} opened by ${dn}`, got, want);
    }
  }
  const deviceByRef = (user, id) => Object.values(devs).find(d => d.user === user && d.id === id);
  for (const f of g.failures) {
    const d = devs[f.opener];
    let got = 'ok';
    try {
      if (f.kind === 'key_envelope') {
        const p = E.parseEnvelope(u(f.encoding));
        const creator = deviceByRef(p.creatorUser, p.creatorDevice);
        if (!creator) throw new Error('envelope names no test device');
        await E.openEnvelope(p, conv, peerOf(d), creator, d);
      } else {
        const guard = new E.ReplayGuard();
        const ring = rings[f.opener] || await ringFor(d);
        for (const a of f.after || []) {
          const ar = E.parseRecord(u(recs[a].encoding));
          await E.openRecord(ring, ar, deviceByRef(ar.sender, ar.senderDevice), guard);
        }
        const rec = E.parseRecord(u(f.encoding));
        const snd = deviceByRef(rec.sender, rec.senderDevice);
        if (!snd) throw new Error('record names no test device');
        await E.openRecord(ring, rec, snd, guard);
      }
    } catch (e) { got = e.name; }
    eq(`failure ${f.name} (${f.note})`, got, f.error);
  }
  return { checks: n, bad };
}
