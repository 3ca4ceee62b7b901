// The stock OpenFeature server SDK (dynamic context) with the stock OFREP provider,
// which calls the single-flag endpoint POST /ofrep/v1/evaluate/flags/{key} per evaluation.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { ErrorCode, OpenFeature, StandardResolutionReasons } from '@openfeature/server-sdk';
import { OFREPProvider } from '@openfeature/ofrep-provider';

import { baseUrl, boolMetadata, sdkKey, splitValues, wideObject } from './env.js';

const user = { targetingKey: 'user-1' };
let client;

before(async () => {
  await OpenFeature.setProviderAndWait(
    new OFREPProvider({ baseUrl, headers: [['Authorization', `Bearer ${sdkKey}`]] }),
  );
  client = OpenFeature.getClient('protocol-tests');
});

after(async () => {
  await OpenFeature.close();
});

/** Asserts a successful evaluation (no error code) with this value, variant and reason. */
function assertSuccess(details, value, variant, reason) {
  assert.equal(details.errorCode, undefined, `unexpected error: ${details.errorCode} ${details.errorMessage}`);
  assert.deepEqual(details.value, value);
  assert.equal(details.variant, variant);
  assert.equal(details.reason, reason);
}

/** Asserts a failed evaluation: the caller's default, reason ERROR and this error code. */
function assertError(details, defaultValue, errorCode) {
  assert.equal(details.errorCode, errorCode, `got ${details.errorCode}: ${details.errorMessage}`);
  assert.deepEqual(details.value, defaultValue);
  assert.equal(details.reason, StandardResolutionReasons.ERROR);
}

describe('typed values and details', () => {
  test('boolean, with flag metadata', async () => {
    assert.equal(await client.getBooleanValue('proto-bool', false, user), true);
    const details = await client.getBooleanDetails('proto-bool', false, user);
    assertSuccess(details, true, 'on', StandardResolutionReasons.STATIC);
    assert.equal(details.flagKey, 'proto-bool');
    assert.deepEqual(details.flagMetadata, boolMetadata);
  });

  test('string (production override)', async () => {
    assert.equal(await client.getStringValue('proto-string', 'fallback', user), 'green');
    assertSuccess(await client.getStringDetails('proto-string', 'fallback', user), 'green', 'green', 'STATIC');
  });

  test('integer number (production override)', async () => {
    assert.equal(await client.getNumberValue('proto-int', 0, user), 42);
    assertSuccess(await client.getNumberDetails('proto-int', 0, user), 42, '42', 'STATIC');
  });

  test('float numbers', async () => {
    assertSuccess(await client.getNumberDetails('proto-float', 0, user), 2.5, '2.5', 'STATIC');
    assertSuccess(await client.getNumberDetails('proto-float-whole', 0, user), 1, '1.0', 'STATIC');
  });

  test('object', async () => {
    assert.deepEqual(await client.getObjectValue('proto-object', {}, user), wideObject);
    assertSuccess(await client.getObjectDetails('proto-object', {}, user), wideObject, 'wide', 'STATIC');
  });

  test('X-API-Key authentication works too', async () => {
    OpenFeature.setProvider('x-api-key', new OFREPProvider({ baseUrl, headers: [['X-API-Key', sdkKey]] }));
    const other = OpenFeature.getClient('x-api-key');
    assertSuccess(await other.getBooleanDetails('proto-bool', false, user), true, 'on', 'STATIC');
  });
});

describe('targeting', () => {
  test('a matching attribute gives TARGETING_MATCH', async () => {
    const details = await client.getStringDetails('proto-targeting', 'fallback', { ...user, plan: 'premium' });
    assertSuccess(details, 'premium-experience', 'premium-experience', StandardResolutionReasons.TARGETING_MATCH);
  });

  test('no match gives the flag default with reason DEFAULT', async () => {
    for (const context of [{ ...user, plan: 'free' }, user, {}]) {
      const details = await client.getStringDetails('proto-targeting', 'fallback', context);
      assertSuccess(details, 'standard', 'standard', StandardResolutionReasons.DEFAULT);
    }
  });

  test('split: sticky per targeting key, both variants over many keys', async () => {
    const first = await client.getStringDetails('proto-split', 'fallback', { targetingKey: 'sticky-user' });
    assert.equal(first.reason, StandardResolutionReasons.SPLIT);
    assert.ok(first.variant in splitValues, `unknown variant ${first.variant}`);
    assert.equal(first.value, splitValues[first.variant]);
    for (let i = 0; i < 5; i++) {
      const again = await client.getStringDetails('proto-split', 'fallback', { targetingKey: 'sticky-user' });
      assertSuccess(again, first.value, first.variant, StandardResolutionReasons.SPLIT);
    }

    const counts = { control: 0, treatment: 0 };
    for (let i = 0; i < 200; i++) {
      const details = await client.getStringDetails('proto-split', 'fallback', { targetingKey: `split-user-${i}` });
      assert.equal(details.reason, StandardResolutionReasons.SPLIT);
      assert.equal(details.value, splitValues[details.variant]);
      counts[details.variant]++;
    }
    assert.ok(counts.control >= 50 && counts.treatment >= 50, `50/50 split too skewed: ${JSON.stringify(counts)}`);
  });

  test('percentage rollout with a targeting key', async () => {
    const details = await client.getBooleanDetails('proto-rollout', false, user);
    assert.equal(details.errorCode, undefined, details.errorMessage);
    assert.ok(
      (details.value === true && details.reason === 'SPLIT') || (details.value === false && details.reason === 'DEFAULT'),
      JSON.stringify(details),
    );
  });
});

describe('disabled flags', () => {
  test('serve their default variant with reason DISABLED', async () => {
    assertSuccess(
      await client.getStringDetails('proto-disabled', 'fallback', user),
      'alpha-value',
      'alpha',
      StandardResolutionReasons.DISABLED,
    );
  });

  test('a flag disabled in production only', async () => {
    assertSuccess(await client.getBooleanDetails('proto-prod-off', true, user), false, 'off', 'DISABLED');
  });
});

describe('errors', () => {
  test('missing flag: FLAG_NOT_FOUND and the caller default', async () => {
    assert.equal(await client.getBooleanValue('no-such-flag', true, user), true);
    assertError(await client.getBooleanDetails('no-such-flag', true, user), true, ErrorCode.FLAG_NOT_FOUND);
    assertError(await client.getObjectDetails('no-such-flag', { a: 1 }, user), { a: 1 }, ErrorCode.FLAG_NOT_FOUND);
  });

  test('wrong type: TYPE_MISMATCH and the caller default', async () => {
    assertError(await client.getStringDetails('proto-bool', 'fallback', user), 'fallback', ErrorCode.TYPE_MISMATCH);
    assertError(await client.getNumberDetails('proto-string', 7, user), 7, ErrorCode.TYPE_MISMATCH);
    assertError(await client.getBooleanDetails('proto-object', false, user), false, ErrorCode.TYPE_MISMATCH);
  });

  test('rollout without a targeting key: TARGETING_KEY_MISSING', async () => {
    assertError(await client.getBooleanDetails('proto-rollout', true, {}), true, ErrorCode.TARGETING_KEY_MISSING);
    assertError(
      await client.getStringDetails('proto-split', 'fallback', { plan: 'premium' }),
      'fallback',
      ErrorCode.TARGETING_KEY_MISSING,
    );
  });

  test('a non-string targeting key: INVALID_CONTEXT', async () => {
    assertError(await client.getBooleanDetails('proto-bool', false, { targetingKey: 42 }), false, ErrorCode.INVALID_CONTEXT);
  });

  test('a wrong SDK key: GENERAL error and the caller default', async () => {
    OpenFeature.setProvider(
      'bad-key',
      new OFREPProvider({ baseUrl, headers: [['Authorization', 'Bearer sy_not_a_real_key']] }),
    );
    const other = OpenFeature.getClient('bad-key');
    assertError(await other.getBooleanDetails('proto-bool', false, user), false, ErrorCode.GENERAL);
  });
});
