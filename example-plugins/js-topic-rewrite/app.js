// Example plugin in JavaScript: rewrites the topic of delivered messages by
// prefix, for each subscriber, e.g. `legacy/=>v2/` sends a message
// published to `legacy/room1/temp` to its subscribers as `v2/room1/temp`.
// Messages whose topic matches no prefix are left to the next plugin.
//
// componentize-js runs this module's top level at build time (the
// component ships a snapshot of the initialised engine), so nothing here
// may call the host before `lifecycle.init`, which the broker calls in
// every new instance before any hook. See README.md for the configuration
// and the build command.

import { config, log } from 'sluice:plugin/host@0.1.0';

/** Configuration keys this plugin knows; any other key is an error. */
const KNOWN_KEYS = ['rewrite'];

/** The [from, to] prefix pairs, in configuration order (set by init). */
let rules = null;

/** Parses `host.config()`; throws an Error naming the problem. */
function parseConfig(pairs) {
  let rewrite = '';
  for (const [key, value] of pairs) {
    if (!KNOWN_KEYS.includes(key)) {
      throw new Error(
        `unknown configuration key '${key}' (known: ${KNOWN_KEYS.join(', ')})`,
      );
    }
    rewrite = value;
  }
  const parsed = [];
  for (const raw of rewrite.split(',')) {
    const entry = raw.trim();
    if (entry === '') continue;
    const arrow = entry.indexOf('=>');
    if (arrow < 0) {
      throw new Error(`rewrite: '${entry}' is not from=>to`);
    }
    const from = entry.slice(0, arrow).trim();
    const to = entry.slice(arrow + 2).trim();
    if (from === '') {
      throw new Error(`rewrite: '${entry}' has an empty prefix to replace`);
    }
    if (/[+#]/.test(from) || /[+#]/.test(to)) {
      throw new Error(`rewrite: '${entry}': topics cannot contain + or #`);
    }
    parsed.push([from, to]);
  }
  if (parsed.length === 0) {
    throw new Error('rewrite is missing: give at least one from=>to pair');
  }
  return parsed;
}

/** The new topic for `topic`: the first matching rule wins; null if none. */
function rewritten(topic) {
  for (const [from, to] of rules ?? []) {
    if (topic.startsWith(from)) {
      const result = to + topic.slice(from.length);
      // A rewrite to an empty topic would be invalid (the broker would send
      // the message unchanged and log it): leave such messages alone.
      return result === '' ? null : result;
    }
  }
  return null;
}

/** The verdict shared by both hooks: `ok` with a new topic, or `next`. */
function deliver(topic) {
  const to = rewritten(topic);
  if (to === null) {
    return { tag: 'next' };
  }
  return {
    tag: 'ok',
    val: { topic: to, payload: undefined, properties: undefined },
  };
}

export const lifecycle = {
  init() {
    // A thrown value is the `error` of init's result: the broker refuses
    // the plugin and logs it. It must be the string itself: an Error
    // object thrown out of a hook traps the instance instead.
    try {
      rules = parseConfig(config());
    } catch (e) {
      throw e instanceof Error ? e.message : String(e);
    }
    log(
      'info',
      `js-topic-rewrite: ${rules.map(([f, t]) => `${f} => ${t}`).join(', ')}`,
    );
  },
};

export const onDeliver = {
  onDeliver(username, subscriberId, qos, topic, payload, retain) {
    return deliver(topic);
  },
};

export const onDeliverM5 = {
  onDeliverM5(username, subscriberId, qos, topic, payload, retain, properties) {
    return deliver(topic);
  },
};
