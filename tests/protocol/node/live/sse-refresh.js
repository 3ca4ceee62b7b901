// The stock OpenFeature web SDK and OFREP web provider, with an EventSource implementation
// (npm `eventsource`), against a server of its own: the bulk response advertises the OFREP
// event stream, the provider connects to it, and a flag killed through the admin API reaches
// the client by a `refetchEvaluation` notification — with polling set to ten minutes, so
// nothing else could have brought it.
//
// Not a `*.test.js` file: the Rust harness runs it alone, on a server only it changes
// (crates/cli/tests/it/protocol.rs, `protocol_node_web_sdk_event_stream`).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';

import { EventSource } from 'eventsource';
import { OpenFeature, ProviderEvents, StandardResolutionReasons } from '@openfeature/web-sdk';
import { OFREPWebProvider } from '@openfeature/ofrep-web-provider';

import { baseUrl, recordFetches, sdkKey } from '../env.js';

globalThis.EventSource = EventSource;
const adminToken = process.env.SWITCHYARD_ADMIN_TOKEN;
const fetches = recordFetches();
const changed = [];

async function waitFor(condition, what, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${what}; fetches: ${JSON.stringify(fetches)}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

async function admin(method, path) {
  const response = await fetch(`${baseUrl}${path}`, {
    method,
    headers: { Authorization: `Bearer ${adminToken}` },
  });
  assert.ok(response.ok, `${method} ${path}: ${response.status} ${await response.text()}`);
}

before(async () => {
  assert.ok(adminToken, 'SWITCHYARD_ADMIN_TOKEN is set by the harness');
  OpenFeature.addHandler(ProviderEvents.ConfigurationChanged, (event) => changed.push(event));
  await OpenFeature.setProviderAndWait(
    new OFREPWebProvider({ baseUrl, headers: [['X-API-Key', sdkKey]], pollInterval: 600_000 }),
    { targetingKey: 'user-1' },
  );
});

after(async () => {
  await OpenFeature.close();
});

test('the bulk response advertises the event stream and the provider connects to it', async () => {
  await waitFor(
    () => fetches.some((f) => new URL(f.url).pathname === '/ofrep/v1/events' && f.status === 200),
    'the provider to open the advertised event stream',
  );
  const stream = fetches.find((f) => new URL(f.url).pathname === '/ofrep/v1/events');
  assert.ok(new URL(stream.url).searchParams.get('token'), 'the stream URL carries its signed token');
  assert.equal(OpenFeature.getClient().getBooleanValue('proto-bool', false), true);
});

test('a kill through the admin API reaches the client by the stream, without polling', async () => {
  const client = OpenFeature.getClient();
  const bulkBefore = fetches.filter((f) => new URL(f.url).pathname === '/ofrep/v1/evaluate/flags').length;
  await admin('POST', '/api/v1/flags/proto-bool/environments/production/kill');
  await waitFor(() => client.getBooleanValue('proto-bool', true) === false, 'the killed flag to reach the client');
  const details = client.getBooleanDetails('proto-bool', true);
  assert.equal(details.reason, StandardResolutionReasons.DISABLED);
  const refetches = fetches.filter((f) => new URL(f.url).pathname === '/ofrep/v1/evaluate/flags').slice(bulkBefore);
  assert.ok(refetches.length >= 1, 'the provider fetched again after the notification');
  assert.equal(refetches.at(-1).status, 200);
  // The provider updates its cache, then emits the event: wait for it rather than race it.
  await waitFor(() => changed.length >= 1, 'PROVIDER_CONFIGURATION_CHANGED to be emitted');

  // And back: releasing the kill switch reaches it the same way.
  await admin('DELETE', '/api/v1/flags/proto-bool/environments/production/kill');
  await waitFor(() => client.getBooleanValue('proto-bool', false) === true, 'the released flag to reach the client');
});
