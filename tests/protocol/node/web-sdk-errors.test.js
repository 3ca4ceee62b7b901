// How the OFREP web provider takes the bulk endpoint's whole-request failures: a rejected SDK
// key at start (401: the provider goes FATAL) and an invalid context (400 with a
// `bulkEvaluationFailure` body the provider must recognise, not an unexpected response).
import { after, test } from 'node:test';
import assert from 'node:assert/strict';

import { ErrorCode, OpenFeature, ProviderEvents, ProviderStatus } from '@openfeature/web-sdk';
import { OFREPWebProvider } from '@openfeature/ofrep-web-provider';

import { baseUrl, recordFetches, sdkKey } from './env.js';

const fetches = recordFetches();

after(async () => {
  await OpenFeature.close();
});

test('a wrong SDK key: initialization fails, the provider is FATAL, callers get their default', async () => {
  const provider = new OFREPWebProvider({ baseUrl, headers: [['X-API-Key', 'sy_not_a_real_key']] });
  await assert.rejects(OpenFeature.setProviderAndWait('bad-key', provider, { targetingKey: 'user-1' }));
  assert.equal(fetches.at(-1).status, 401);

  const client = OpenFeature.getClient('bad-key');
  assert.equal(client.providerStatus, ProviderStatus.FATAL);
  const details = client.getBooleanDetails('proto-bool', false);
  assert.equal(details.value, false);
  assert.equal(details.errorCode, ErrorCode.PROVIDER_FATAL);
});

test('an invalid context: the 400 is read as an OFREP bulk failure', async () => {
  const client = OpenFeature.getClient('invalid-context');
  const errors = [];
  client.addHandler(ProviderEvents.Error, (event) => errors.push(event));
  const provider = new OFREPWebProvider({ baseUrl, headers: [['X-API-Key', sdkKey]] });
  await OpenFeature.setProviderAndWait('invalid-context', provider, { targetingKey: 'user-1' });
  assert.equal(client.getBooleanValue('proto-bool', false), true);

  await OpenFeature.setContext('invalid-context', { targetingKey: 42 });
  assert.equal(fetches.at(-1).status, 400);
  assert.equal(errors.length, 1);
  // "status: 400" comes from the provider's handling of a well-formed bulkEvaluationFailure;
  // a body it cannot read would give "does not match the expected format" instead.
  assert.match(errors[0].message, /status: 400/);

  // A valid context again recovers.
  await OpenFeature.setContext('invalid-context', { targetingKey: 'user-1', plan: 'premium' });
  assert.equal(fetches.at(-1).status, 200);
  assert.equal(client.providerStatus, ProviderStatus.READY);
  assert.equal(client.getStringValue('proto-targeting', 'fallback'), 'premium-experience');
});
