// {{name}}: a Sluice plugin in JavaScript (componentize-js).
//
// It authenticates clients against the `users` of its configuration
// (`name:password` pairs, comma-separated) and leaves clients it does not
// know to the next plugin. Replace the hooks with your own, and list the
// hooks you export in world.wit. WIT `option` is `undefined` when absent,
// `list<u8>` a Uint8Array, and a variant `{ tag, val }`.

import { config, log } from 'sluice:plugin/host@0.1.0';

let users = new Map();

function parseUsers(text) {
  const parsed = new Map();
  for (const raw of text.split(',')) {
    const entry = raw.trim();
    if (!entry) continue;
    const at = entry.indexOf(':');
    if (at <= 0) throw `users: '${entry}' is not name:password`;
    parsed.set(entry.slice(0, at), entry.slice(at + 1));
  }
  return parsed;
}

function check(username, password) {
  const expected = username === undefined ? undefined : users.get(username);
  if (expected === undefined) return 'unknown';
  const given = password === undefined ? '' : new TextDecoder().decode(password);
  return given === expected ? 'ok' : 'wrong';
}

export const lifecycle = {
  init() {
    // A thrown string is init's error: the broker refuses the plugin and
    // logs it (an Error object would trap the instance instead).
    const settings = new Map(config());
    users = parseUsers(settings.get('users') ?? '');
    log('info', `${users.size} users configured`);
  },
};

export const authOnRegister = {
  authOnRegister(conn, subscriberId, username, password, cleanSession) {
    switch (check(username, password)) {
      case 'ok':
        return { tag: 'ok', val: undefined };
      case 'unknown':
        return { tag: 'next' };
      default:
        return { tag: 'error', val: { tag: 'invalid-credentials', val: 'wrong password' } };
    }
  },
};

export const authOnRegisterM5 = {
  authOnRegisterM5(conn, subscriberId, username, password, cleanStart, properties) {
    switch (check(username, password)) {
      case 'ok':
        return { tag: 'ok', val: undefined };
      case 'unknown':
        return { tag: 'next' };
      default:
        return {
          tag: 'error',
          val: { reasonCode: 0x86, reasonString: undefined, serverReference: undefined },
        };
    }
  },
};
