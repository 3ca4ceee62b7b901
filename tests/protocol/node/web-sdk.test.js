// The stock OpenFeature web SDK (static context) with the stock OFREP web provider, which
// fetches every flag at once from the bulk endpoint POST /ofrep/v1/evaluate/flags, caches the
// result with its ETag and re-fetches (with If-None-Match) when the context changes.
//
// Node 20 has every global the provider needs on this path (fetch, Request, Headers,
// AbortController, crypto.subtle); it has no `localStorage` (the provider's persistent cache
// then logs and skips itself: see web-sdk-cache.test.js for that path), no `document` (no
// visibility refresh) and no `EventSource` (only needed if the server announces event streams).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { ErrorCode, OpenFeature, ProviderEvents, StandardResolutionReasons } from '@openfeature/web-sdk';
import { OFREPWebProvider } from '@openfeature/ofrep-web-provider';

import { baseUrl, boolMetadata, recordFetches, sdkKey, splitValues, wideObject } from './env.js';

const fetches = recordFetches();
const user = { targetingKey: 'user-1' };
let client;
const providerErrors = [];

before(async () => {
  assert.equal(typeof globalThis.localStorage, 'undefined', 'this file tests the no-localStorage path');
  OpenFeature.addHandler(ProviderEvents.Error, (event) => providerErrors.push(event));
  await OpenFeature.setProviderAndWait(new OFREPWebProvider({ baseUrl, headers: [['X-API-Key', sdkKey]] }), user);
  client = OpenFeature.getClient();
});

after(async () => {
  await OpenFeature.close();
  assert.deepEqual(providerErrors, [], 'the provider reported errors');
});

/** Sets the static context and checks the provider took it without an error event. */
async function setContext(context) {
  const errorsBefore = providerErrors.length;
  await OpenFeature.setContext(context);
  assert.equal(providerErrors.length, errorsBefore, `context change failed: ${JSON.stringify(providerErrors.at(-1))}`);
}

function assertSuccess(details, value, variant, reason) {
  assert.equal(details.errorCode, undefined, `unexpected error: ${details.errorCode} ${details.errorMessage}`);
  assert.deepEqual(details.value, value);
  assert.equal(details.variant, variant);
  assert.equal(details.reason, reason);
}

function assertError(details, defaultValue, errorCode) {
  assert.equal(details.errorCode, errorCode, `got ${details.errorCode}: ${details.errorMessage}`);
  assert.deepEqual(details.value, defaultValue);
  assert.equal(details.reason, StandardResolutionReasons.ERROR);
}

describe('typed values and details from the bulk endpoint', () => {
  before(() => setContext(user));

  test('the provider used the bulk endpoint and got an ETag', () => {
    const bulk = fetches.filter((f) => f.url === `${baseUrl}/ofrep/v1/evaluate/flags`);
    assert.ok(bulk.length >= 1, JSON.stringify(fetches));
    assert.equal(bulk[0].status, 200);
    assert.match(bulk[0].etag ?? '', /^"[^"]+"$/, 'a strong ETag');
    assert.ok(fetches.every((f) => !f.url.includes('/evaluate/flags/')), 'no single-flag calls');
  });

  test('boolean, with flag metadata', () => {
    assert.equal(client.getBooleanValue('proto-bool', false), true);
    const details = client.getBooleanDetails('proto-bool', false);
    assertSuccess(details, true, 'on', StandardResolutionReasons.STATIC);
    assert.deepEqual(details.flagMetadata, boolMetadata);
  });

  test('string (production override)', () => {
    assertSuccess(client.getStringDetails('proto-string', 'fallback'), 'green', 'green', 'STATIC');
  });

  test('integer and float numbers', () => {
    assertSuccess(client.getNumberDetails('proto-int', 0), 42, '42', 'STATIC');
    assertSuccess(client.getNumberDetails('proto-float', 0), 2.5, '2.5', 'STATIC');
    assertSuccess(client.getNumberDetails('proto-float-whole', 0), 1, '1.0', 'STATIC');
  });

  test('object', () => {
    assert.deepEqual(client.getObjectValue('proto-object', {}), wideObject);
    assertSuccess(client.getObjectDetails('proto-object', {}), wideObject, 'wide', 'STATIC');
  });

  test('disabled flags: default variant, reason DISABLED', () => {
    assertSuccess(client.getStringDetails('proto-disabled', 'fallback'), 'alpha-value', 'alpha', 'DISABLED');
    assertSuccess(client.getBooleanDetails('proto-prod-off', true), false, 'off', 'DISABLED');
  });

  test('missing flag: FLAG_NOT_FOUND and the caller default', () => {
    assertError(client.getBooleanDetails('no-such-flag', true), true, ErrorCode.FLAG_NOT_FOUND);
    assertError(client.getStringDetails('no-such-flag', 'fallback'), 'fallback', ErrorCode.FLAG_NOT_FOUND);
  });

  test('wrong type: TYPE_MISMATCH and the caller default', () => {
    assertError(client.getStringDetails('proto-bool', 'fallback'), 'fallback', ErrorCode.TYPE_MISMATCH);
    assertError(client.getNumberDetails('proto-string', 7), 7, ErrorCode.TYPE_MISMATCH);
    assertError(client.getBooleanDetails('proto-object', false), false, ErrorCode.TYPE_MISMATCH);
  });
});

describe('context changes', () => {
  test('targeting: match, then back to the default', async () => {
    await setContext({ ...user, plan: 'premium' });
    assertSuccess(
      client.getStringDetails('proto-targeting', 'fallback'),
      'premium-experience',
      'premium-experience',
      StandardResolutionReasons.TARGETING_MATCH,
    );
    await setContext({ ...user, plan: 'free' });
    assertSuccess(client.getStringDetails('proto-targeting', 'fallback'), 'standard', 'standard', 'DEFAULT');
    await setContext({ ...user, plan: 'premium' });
    assert.equal(client.getStringValue('proto-targeting', 'fallback'), 'premium-experience');
  });

  test('ETag: an unchanged evaluation is a 304 and the cached values stay', async () => {
    await setContext(user);
    const expected = client.getStringDetails('proto-targeting', 'fallback');
    assert.equal(expected.value, 'standard');
    const etag = fetches.at(-1).etag;
    assert.ok(etag, 'the last bulk response had an ETag');

    // Same targeting key, an attribute no flag looks at: same evaluation, so the provider's
    // If-None-Match re-fetch must get a 304, twice in a row.
    for (const context of [{ ...user, unused: 'x' }, { ...user, unused: 'y' }]) {
      const count = fetches.length;
      await setContext(context);
      const exchange = fetches.slice(count);
      assert.equal(exchange.length, 1, JSON.stringify(exchange));
      assert.equal(exchange[0].ifNoneMatch, etag);
      assert.equal(exchange[0].status, 304);
      assert.equal(exchange[0].etag, etag, 'a 304 repeats the ETag');
      assertSuccess(client.getStringDetails('proto-targeting', 'fallback'), 'standard', 'standard', 'DEFAULT');
      assertSuccess(client.getNumberDetails('proto-int', 0), 42, '42', 'STATIC');
    }

    // A change that alters an evaluation must not be answered with a 304.
    const count = fetches.length;
    await setContext({ ...user, unused: 'y', plan: 'premium' });
    const [exchange] = fetches.slice(count);
    assert.equal(exchange.ifNoneMatch, etag);
    assert.equal(exchange.status, 200);
    assert.notEqual(exchange.etag, etag);
    assert.equal(client.getStringValue('proto-targeting', 'fallback'), 'premium-experience');

    // Calling the provider's onContextChange directly takes the same path.
    const provider = OpenFeature.getProvider();
    const before304 = fetches.length;
    await provider.onContextChange({ ...user, plan: 'premium' }, { ...user, plan: 'premium' });
    assert.equal(fetches.slice(before304)[0]?.status, 304, JSON.stringify(fetches.slice(before304)));
    assert.equal(client.getStringValue('proto-targeting', 'fallback'), 'premium-experience');
  });

  test('split: sticky per targeting key, both variants over many keys', async () => {
    await setContext({ targetingKey: 'sticky-user' });
    const first = client.getStringDetails('proto-split', 'fallback');
    assert.equal(first.reason, StandardResolutionReasons.SPLIT);
    assert.equal(first.value, splitValues[first.variant]);

    const counts = { control: 0, treatment: 0 };
    for (let i = 0; i < 200; i++) {
      await setContext({ targetingKey: `split-user-${i}` });
      const details = client.getStringDetails('proto-split', 'fallback');
      assert.equal(details.reason, StandardResolutionReasons.SPLIT);
      assert.equal(details.value, splitValues[details.variant]);
      counts[details.variant]++;
    }
    assert.ok(counts.control >= 50 && counts.treatment >= 50, `50/50 split too skewed: ${JSON.stringify(counts)}`);

    await setContext({ targetingKey: 'sticky-user' });
    assertSuccess(client.getStringDetails('proto-split', 'fallback'), first.value, first.variant, 'SPLIT');
  });

  test('no targeting key: per-flag TARGETING_KEY_MISSING, other flags still served', async () => {
    await setContext({ plan: 'premium' });
    assertError(client.getBooleanDetails('proto-rollout', true), true, ErrorCode.TARGETING_KEY_MISSING);
    assertError(client.getStringDetails('proto-split', 'fallback'), 'fallback', ErrorCode.TARGETING_KEY_MISSING);
    assertSuccess(client.getBooleanDetails('proto-bool', false), true, 'on', 'STATIC');
    assert.equal(client.getStringValue('proto-targeting', 'fallback'), 'premium-experience');

    await setContext(user);
    const rollout = client.getBooleanDetails('proto-rollout', true);
    assert.equal(rollout.errorCode, undefined, rollout.errorMessage);
  });
});
