// The OFREP web provider's persistent cache (its default `local-cache-first` mode, ADR-0009)
// as it runs in a browser: Node has no `localStorage`, so this file installs a minimal
// in-memory one. A second provider instance on the same storage plays a page reload: it serves
// the stored evaluation (reason CACHED) at once and revalidates it in the background with
// If-None-Match, which the server must answer with 304 when nothing changed and with 200 (and
// a new ETag) when the context change alters an evaluation.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';

import { OpenFeature, ProviderEvents, StandardResolutionReasons } from '@openfeature/web-sdk';
import { OFREPWebProvider } from '@openfeature/ofrep-web-provider';

import { baseUrl, recordFetches, sdkKey } from './env.js';

class MemoryStorage {
  #items = new Map();
  get length() {
    return this.#items.size;
  }
  key(index) {
    return [...this.#items.keys()][index] ?? null;
  }
  getItem(key) {
    return this.#items.has(key) ? this.#items.get(key) : null;
  }
  setItem(key, value) {
    this.#items.set(key, String(value));
  }
  removeItem(key) {
    this.#items.delete(key);
  }
  clear() {
    this.#items.clear();
  }
  entries() {
    return [...this.#items.entries()].map(([key, value]) => [key, JSON.parse(value)]);
  }
}

const storage = new MemoryStorage();
globalThis.localStorage = storage;
const fetches = recordFetches();
const user = { targetingKey: 'cache-user' };
const newProvider = () => new OFREPWebProvider({ baseUrl, headers: [['Authorization', `Bearer ${sdkKey}`]] });

/** Waits until `predicate()` holds (polling), failing after `ms`. */
async function waitFor(predicate, what, ms = 5000) {
  const deadline = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > deadline) {
      assert.fail(`timed out waiting for ${what}; fetches: ${JSON.stringify(fetches)}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

before(async () => {
  await OpenFeature.setProviderAndWait(newProvider(), user);
});

after(async () => {
  await OpenFeature.close();
  delete globalThis.localStorage;
});

test('the first load fetches and persists the evaluation with its ETag', () => {
  assert.equal(fetches.length, 1);
  assert.equal(fetches[0].status, 200);
  const client = OpenFeature.getClient();
  const details = client.getStringDetails('proto-targeting', 'fallback');
  assert.equal(details.value, 'standard');
  assert.equal(details.reason, StandardResolutionReasons.DEFAULT);

  const stored = storage.entries();
  assert.equal(stored.length, 1);
  const [, entry] = stored[0];
  assert.equal(entry.etag, fetches[0].etag);
  assert.equal(entry.data['proto-int'].value, 42);
});

test('a reload serves the cache and revalidates it with a 304', async () => {
  await OpenFeature.clearProviders();
  const count = fetches.length;
  await OpenFeature.setProviderAndWait(newProvider(), user);
  const client = OpenFeature.getClient();

  const cached = client.getNumberDetails('proto-int', 0);
  assert.equal(cached.value, 42);
  assert.equal(cached.variant, '42');
  assert.equal(cached.reason, StandardResolutionReasons.CACHED);

  await waitFor(() => fetches.length > count, 'the background revalidation');
  const [revalidation] = fetches.slice(count);
  assert.equal(revalidation.ifNoneMatch, fetches[0].etag);
  assert.equal(revalidation.status, 304);
  assert.equal(client.getNumberValue('proto-int', 0), 42);
  assert.equal(client.getStringValue('proto-targeting', 'fallback'), 'standard');
});

test('a context change that alters an evaluation gets a 200 and the new value', async () => {
  const client = OpenFeature.getClient();
  const changed = [];
  client.addHandler(ProviderEvents.ConfigurationChanged, (event) => changed.push(event));
  const count = fetches.length;

  // Same targeting key, so the provider first serves the stored entry, then revalidates it.
  await OpenFeature.setContext({ ...user, plan: 'premium' });
  await waitFor(() => changed.length > 0, 'PROVIDER_CONFIGURATION_CHANGED');

  const [revalidation] = fetches.slice(count);
  assert.equal(revalidation.ifNoneMatch, fetches[0].etag);
  assert.equal(revalidation.status, 200);
  assert.notEqual(revalidation.etag, fetches[0].etag);
  assert.deepEqual(changed[0].flagsChanged, ['proto-targeting']);

  const details = client.getStringDetails('proto-targeting', 'fallback');
  assert.equal(details.value, 'premium-experience');
  assert.equal(details.reason, StandardResolutionReasons.TARGETING_MATCH);
  const [[, entry]] = storage.entries();
  assert.equal(entry.etag, revalidation.etag, 'the new evaluation was persisted');
});
