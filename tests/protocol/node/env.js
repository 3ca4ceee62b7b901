// Shared settings of the Node protocol tests (not a test file itself).
// The Rust harness (crates/cli/tests/it/protocol.rs) starts a real server and sets these.

function required(name) {
  const value = process.env[name];
  if (!value) {
    throw new Error(
      `${name} is not set: run these tests through \`cargo test -p switchyard --test integration protocol\` ` +
        `or see tests/protocol/README.md`,
    );
  }
  return value;
}

/** Base URL of the server, without a trailing slash (the part before `/ofrep`). */
export const baseUrl = required('SWITCHYARD_URL').replace(/\/+$/, '');
/** An SDK key of the `production` environment. */
export const sdkKey = required('SWITCHYARD_SDK_KEY');

/** The value each variant of `proto-split` serves. */
export const splitValues = { control: 'control-value', treatment: 'treatment-value' };

/** The production value of `proto-object`. */
export const wideObject = { layout: 'wide', columns: 4, sidebar: true, ratio: 0.5, tags: ['a', 'b'] };

/** Metadata of `proto-bool`. */
export const boolMetadata = { owner: 'team-protocol', tier: 2, experimental: false };

/**
 * Wraps `globalThis.fetch` to record every OFREP exchange; returns the log.
 * Must run before a provider is constructed (the providers bind `globalThis.fetch` then).
 */
export function recordFetches() {
  const log = [];
  const original = globalThis.fetch;
  globalThis.fetch = async (input, init) => {
    const request = new Request(input, init);
    const response = await original(request);
    log.push({
      url: request.url,
      ifNoneMatch: request.headers.get('if-none-match'),
      status: response.status,
      etag: response.headers.get('etag'),
    });
    return response;
  };
  return log;
}
