// Switchyard's web UI in a real browser: Debian's chromium, headless, driven by playwright-core.
// Started by `cargo test` (crates/cli/tests/it/ui.rs), which runs the real binary and passes
// SWITCHYARD_URL, SWITCHYARD_ADMIN_TOKEN, SWITCHYARD_VIEWER_TOKEN and SWITCHYARD_SDK_KEY.
// With SWITCHYARD_UI_SCREENSHOTS=<dir> it also saves the main pages there (docs/ui/).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';

const URL_ = process.env.SWITCHYARD_URL;
const ADMIN = process.env.SWITCHYARD_ADMIN_TOKEN;
const VIEWER = process.env.SWITCHYARD_VIEWER_TOKEN;
const SDK = process.env.SWITCHYARD_SDK_KEY;
const SHOTS = process.env.SWITCHYARD_UI_SCREENSHOTS;
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
assert.ok(URL_ && ADMIN && VIEWER && SDK, 'SWITCHYARD_URL and the tokens must be set (cargo test runs this)');

let browser;
const requests = [];

before(async () => {
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'] });
});
after(async () => { if (browser) await browser.close(); });

/// A fresh browser context (its own cookies), recording every request's host.
async function newPage(viewport = { width: 1280, height: 860 }) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  page.on('request', (r) => requests.push(r.url()));
  context.setDefaultTimeout(10000);
  page.on('pageerror', (e) => { console.log(`# page error: ${e.message}`); });
  page.on('console', (m) => { if (m.type() === 'error') console.log(`# console: ${m.text()}`); });
  return { context, page };
}

async function signIn(page, token) {
  await page.goto(`${URL_}/ui`);
  await page.fill('#token', token);
  await page.click('button[type="submit"]');
  await page.waitForSelector('header.top');
}

async function shot(page, name) {
  if (!SHOTS) return;
  fs.mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });
}

/// The admin API with the admin token (what the CLI does), for checks and for changes made
/// "elsewhere".
async function adminApi(method, p, body, headers = {}) {
  const res = await fetch(`${URL_}${p}`, { method, headers: { Authorization: `Bearer ${ADMIN}`, 'Content-Type': 'application/json', ...headers }, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}
/// `probe()`'s first truthy answer within five seconds (a save lands after its dialog closes).
async function eventually(probe) {
  for (let i = 0; i < 100; i++) {
    const v = await probe();
    if (v) return v;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('not within 5 s');
}
async function explain(flag, environment, context) {
  return (await adminApi('POST', `/api/v1/flags/${flag}/evaluate`, { environment, context })).body;
}

/// Answers a change dialog: checks its diff names `field`, types the reason, confirms.
async function confirm(page, { field, reason, button }) {
  const dialog = page.locator('dialog[open]');
  await dialog.waitFor();
  if (field) await dialog.locator('table.diff', { hasText: field }).waitFor();
  if (reason) await dialog.locator('input[name="reason"]').fill(reason);
  await dialog.locator('button[type="submit"]', button ? { hasText: button } : {}).click();
  await dialog.waitFor({ state: 'detached' });
}

test('sign-in: a wrong token is refused, the right one opens a session the page cannot read', async () => {
  const { context, page } = await newPage();
  await page.goto(`${URL_}/`);
  assert.match(page.url(), /\/ui/);
  await shot(page, 'sign-in');
  await page.fill('#token', 'sy_0000000000000000_wrong');
  await page.click('button[type="submit"]');
  await page.locator('.error', { hasText: 'unknown or revoked token' }).waitFor();
  await page.fill('#token', ADMIN);
  await page.click('button[type="submit"]');
  await page.locator('table.flags').waitFor();
  assert.ok(!page.url().includes(ADMIN), 'the token is never in a URL');
  assert.ok(!(await page.content()).includes(ADMIN), 'the token is never in the page');
  await page.locator('.badge.role-admin', { hasText: 'admin' }).waitFor();
  const [cookie] = (await context.cookies()).filter((c) => c.name === 'sy_session');
  assert.equal(cookie.httpOnly, true);
  assert.equal(cookie.sameSite, 'Strict');
  assert.equal(await page.evaluate(() => document.cookie), '', 'scripts cannot read the session');
  // A change without the page's anti-forgery token is refused, even with the cookie.
  const status = await page.evaluate(async () => (await fetch('/api/v1/flags/carrier-quotes-api/environments/staging/enabled', { method: 'PUT', headers: { 'Content-Type': 'application/json' }, body: '{"enabled":false}' })).status);
  assert.equal(status, 403);
  await context.close();
});

test('create a flag, enable it, kill it, edit a rule and see the evaluation change, see the audit', async () => {
  const { context, page } = await newPage();
  await signIn(page, ADMIN);
  await page.click('a:has-text("New flag")');
  await page.fill('input[name="key"]', 'ui-checkout');
  await page.fill('input[name="name"]', 'New checkout');
  await page.fill('input[name="owner"]', 'team-checkout');
  await page.fill('input[name="tags"]', 'checkout, ui');
  await page.click('button:has-text("Create flag")');
  await page.waitForURL(/\/ui\/flags\/ui-checkout/);
  await page.locator('h1', { hasText: 'ui-checkout' }).waitFor();

  // Enable in production: the dialog shows the difference, the reason goes to the audit log.
  await page.click('[data-toggle="production"]');
  await confirm(page, { field: 'production', reason: 'launch for everyone', button: 'Enable' });
  await page.locator('[data-toggle="production"][aria-checked="true"]').waitFor();
  let e = await explain('ui-checkout', 'production', { targetingKey: 'u-1', email: 'dana@acme.example' });
  assert.equal(e.variant, 'on');
  await shot(page, 'flag-overview');

  // Kill switch, with confirmation.
  await page.click('[data-kill="production"]');
  await confirm(page, { field: 'killSwitch', reason: 'checkout errors', button: 'Kill it' });
  await page.locator('[data-release="production"]').waitFor();
  e = await explain('ui-checkout', 'production', { targetingKey: 'u-1' });
  assert.equal(e.variant, 'off');
  assert.equal(e.decidedBy, 'KILL_SWITCH');
  await page.click('[data-release="production"]');
  await confirm(page, { button: 'Release' });
  await page.locator('[data-kill="production"]').waitFor();

  // A rule: staff (email ends with @acme.example) get `off`; the evaluation panel shows it.
  await page.click('[data-tab="rules"]');
  await page.click('#add-rule');
  await page.fill('[aria-label="Rule 1 condition 1 attribute"]', 'email');
  await page.selectOption('[aria-label="Rule 1 condition 1 operator"]', 'ends_with');
  await page.fill('[aria-label="Rule 1 condition 1 value"]', '@acme.example');
  await page.fill('[aria-label="Rule 1 description"]', 'staff see the old checkout');
  await page.selectOption('[aria-label="Rule 1 variant"]', 'off');
  // A second condition, moved before the first (conditions and rules reorder alike).
  await page.click('[data-add-cond]');
  await page.fill('[aria-label="Rule 1 condition 2 attribute"]', 'country');
  await page.selectOption('[aria-label="Rule 1 condition 2 operator"]', 'not_in');
  await page.fill('[aria-label="Rule 1 condition 2 value"]', 'CH, LI');
  await page.click('[aria-label="Move condition 2 of rule 1 up"]');
  assert.equal(await page.inputValue('[aria-label="Rule 1 condition 1 attribute"]'), 'country');
  await shot(page, 'flag-rules');
  await page.click('button:has-text("Review and save")');
  await confirm(page, { field: 'rules', reason: 'staff keep the old one' });
  const saved = await eventually(async () => (await adminApi('GET', '/api/v1/flags/ui-checkout')).body.definition.environments.production.rules?.[0]);
  assert.deepEqual(saved.conditions.map((c) => c.attribute), ['country', 'email']);
  assert.deepEqual(saved.conditions[0].value, ['CH', 'LI']);
  await page.click('[data-tab="evaluate"]');
  await page.fill('textarea[name="context"]', JSON.stringify({ targetingKey: 'u-1', email: 'dana@acme.example' }));
  await page.click('button:has-text("Evaluate")');
  await page.locator('[data-testid="eval-variant"]', { hasText: 'off' }).waitFor();
  await page.locator('[data-testid="eval-reason"]', { hasText: 'TARGETING_MATCH' }).waitFor();
  await page.locator('ol.trace').waitFor();
  await shot(page, 'flag-evaluate');
  await page.fill('textarea[name="context"]', JSON.stringify({ targetingKey: 'u-1', email: 'dana@example.org' }));
  await page.click('button:has-text("Evaluate")');
  await page.locator('[data-testid="eval-variant"]', { hasText: 'on' }).waitFor();

  // The flag's history: every change, its reason, before and after.
  await page.click('[data-tab="audit"]');
  for (const reason of ['launch for everyone', 'checkout errors', 'staff keep the old one']) {
    await page.locator('ol.audit .reason', { hasText: reason }).waitFor();
  }
  await page.locator('ol.audit details').first().click();
  await page.locator('ol.audit table.diff').first().waitFor();
  await shot(page, 'flag-history');

  // The global audit log, filtered by flag.
  await page.goto(`${URL_}/ui/audit?flag=ui-checkout`);
  await page.locator('ol.audit li', { hasText: 'flag.kill' }).first().waitFor();
  await shot(page, 'audit-log');
  await context.close();
});

test('two tabs editing the same flag: the second save is explained as a conflict, not applied', async () => {
  const { context, page: a } = await newPage();
  await signIn(a, ADMIN);
  const b = await context.newPage();
  for (const p of [a, b]) await p.goto(`${URL_}/ui/flags/ui-checkout?tab=rules&env=production`);
  for (const p of [a, b]) await p.locator('#rules-form').waitFor();
  // Tab A starts an edit; tab B saves one first.
  await a.fill('[aria-label="Rule 1 description"]', 'edited in tab A');
  await b.fill('[aria-label="Rule 1 description"]', 'edited in tab B');
  await b.click('button:has-text("Review and save")');
  await confirm(b, { field: 'description' });
  // Tab A hears about it, keeps its edit, and its save is refused with the reason.
  await a.locator('#changed-elsewhere:not([hidden])').waitFor();
  await a.click('button:has-text("Review and save")');
  await a.locator('#page-error', { hasText: 'Someone else changed this since you opened it' }).waitFor();
  const flag = (await adminApi('GET', '/api/v1/flags/ui-checkout')).body;
  assert.equal(flag.definition.environments.production.rules[0].description, 'edited in tab B');
  await context.close();
});

test('live: the list and a flag page follow changes made elsewhere', async () => {
  const { context, page } = await newPage();
  await signIn(page, ADMIN);
  await page.goto(`${URL_}/ui/flags?q=ui-checkout`);
  const cell = page.locator('tr[data-flag="ui-checkout"] .state[data-env="staging"]');
  await cell.waitFor();
  assert.equal((await cell.textContent()).trim(), 'off');
  await page.locator('#live.on').waitFor();
  const t0 = Date.now();
  const r = await adminApi('PUT', '/api/v1/flags/ui-checkout/environments/staging/enabled', { enabled: true, reason: 'from the CLI' });
  assert.equal(r.status, 200);
  await page.locator('tr[data-flag="ui-checkout"] .state[data-env="staging"]', { hasText: 'on' }).waitFor({ timeout: 5000 });
  console.log(`# the list showed a change made elsewhere after ${Date.now() - t0} ms`);
  await page.goto(`${URL_}/ui/flags/ui-checkout?env=staging`);
  await page.locator('[data-kill="staging"]').waitFor();
  await adminApi('POST', '/api/v1/flags/ui-checkout/environments/staging/kill', { reason: 'elsewhere' });
  await page.locator('[data-release="staging"]').waitFor({ timeout: 5000 });
  await adminApi('DELETE', '/api/v1/flags/ui-checkout/environments/staging/kill', {});
  await context.close();
});

test('the YAML editor names the line of a mistake; organizations and the rollout preview', async () => {
  const { context, page } = await newPage();
  await signIn(page, ADMIN);
  await page.goto(`${URL_}/ui/flags/ui-checkout?tab=yaml&env=production`);
  const text = page.locator('textarea[name="text"]');
  await page.waitForFunction(() => document.querySelector('textarea[name="text"]')?.value.includes('key: ui-checkout'));
  const yaml = await text.inputValue();
  await text.fill(yaml.replace('key: ui-checkout', 'key: ui-checkout\ndefaultVariant: nope'));
  await page.locator('#yaml-check .error', { hasText: 'nope' }).waitFor();
  assert.match(await page.locator('#yaml-check').textContent(), /line \d+/);
  await page.click('#yaml-reset');

  await page.goto(`${URL_}/ui/flags/ui-checkout?tab=overview&env=production`);
  await page.fill('[aria-label="Organization id"]', 'globex');
  await page.selectOption('[aria-label="Override"]', 'off');
  await page.click('#tenant-form button[type="submit"]');
  await confirm(page, { field: 'tenants' });
  await page.locator('td', { hasText: 'globex' }).waitFor();

  await page.goto(`${URL_}/ui/flags/ui-checkout?tab=preview&env=production`);
  const ids = Array.from({ length: 1000 }, (_, i) => `user-${i}`).join('\n');
  await page.fill('textarea[name="ids"]', ids);
  await page.fill('input[name="pct"]', '25');
  await page.click('button:has-text("Count")');
  await page.locator('#preview-result h2', { hasText: '1000 ids' }).waitFor();
  const on = Number(await page.locator('[data-testid="preview-on"]').textContent());
  const off = Number(await page.locator('[data-testid="preview-off"]').textContent());
  assert.equal(on + off, 1000);
  assert.ok(on > 200 && on < 300, `about 25 % on, got ${on}`);
  await shot(page, 'rollout-preview');
  await context.close();
});

test('a viewer sees everything and can change nothing; signing out ends the session', async () => {
  const { context, page } = await newPage();
  await signIn(page, VIEWER);
  await page.locator('.badge.role-viewer').waitFor();
  await page.goto(`${URL_}/ui/flags/ui-checkout`);
  await page.locator('.notice', { hasText: 'signed in as a viewer' }).waitFor();
  assert.equal(await page.locator('[data-toggle="production"]').isDisabled(), true);
  assert.equal(await page.locator('[data-kill="production"]').isDisabled(), true);
  const status = await page.evaluate(async () => (await fetch('/api/v1/flags/ui-checkout/environments/staging/enabled', { method: 'PUT', headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': document.querySelector('meta[name="csrf-token"]').content }, body: '{"enabled":false}' })).status);
  assert.equal(status, 403, 'the API refuses a viewer whatever the page shows');
  await page.click('button:has-text("Sign out")');
  await page.locator('#token').waitFor();
  const after = await page.evaluate(async () => (await fetch('/api/v1/flags')).status);
  assert.equal(after, 401);
  await context.close();
});

test('experiments: start one from the UI, then read its results with the chart', async () => {
  const created = await adminApi('POST', '/api/v1/experiments', {
    id: 'ui-exp', flag: 'ui-checkout', environment: 'development', control: 'off', variants: { off: 50, on: 50 },
    hypothesis: 'the new checkout converts better',
    metrics: [{ event: 'checkout', kind: 'conversion', role: 'primary' },
      { event: 'visit', kind: 'count', role: 'secondary', cupedDays: 7 }],
  });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  await adminApi('PUT', '/api/v1/flags/ui-checkout/environments/development/enabled', { enabled: true });
  const { context, page } = await newPage();
  await signIn(page, ADMIN);
  await page.goto(`${URL_}/ui/experiments`);
  await page.click('a:has-text("ui-exp")');
  await page.click('[data-act="start"]');
  await confirm(page, { button: 'start' });
  await page.locator('.title .badge', { hasText: 'running' }).waitFor();
  // Traffic: OFREP evaluations record exposures; some units convert.
  const variants = {};
  for (let i = 0; i < 400; i++) {
    const res = await fetch(`${URL_}/ofrep/v1/evaluate/flags/ui-checkout`, { method: 'POST', headers: { Authorization: `Bearer ${SDK}`, 'Content-Type': 'application/json' }, body: JSON.stringify({ context: { targetingKey: `unit-${i}` } }) });
    variants[`unit-${i}`] = (await res.json()).variant;
  }
  const events = Object.entries(variants).filter(([, v], i) => i % (v === 'on' ? 3 : 5) === 0)
    .map(([unit], i) => ({ type: 'metric', id: `ui-${i}`, event: 'checkout', unit, timestampMs: Date.now() }));
  // Visits before the experiment (CUPED's covariate) predict the visits after.
  const day = 86400000;
  Object.keys(variants).forEach((unit, i) => {
    for (let k = 0; k < i % 4; k++) {
      events.push({ type: 'metric', id: `ui-pre-${i}-${k}`, event: 'visit', unit, timestampMs: Date.now() - 2 * day - k * 1000 });
      events.push({ type: 'metric', id: `ui-post-${i}-${k}`, event: 'visit', unit, timestampMs: Date.now() + k });
    }
    if (i % 3 === 0) events.push({ type: 'metric', id: `ui-post-${i}-x`, event: 'visit', unit, timestampMs: Date.now() });
  });
  await new Promise((r) => setTimeout(r, 500));
  const sent = await fetch(`${URL_}/sdk/v1/events`, { method: 'POST', headers: { Authorization: `Bearer ${SDK}`, 'Content-Type': 'application/json' }, body: JSON.stringify({ events }) });
  assert.equal(sent.status, 200);
  await page.reload();
  await page.locator('section.results').waitFor();
  await page.locator('section.results figure.chart svg').first().waitFor();
  await page.locator('[data-testid="srm"]').waitFor();
  await page.locator('.warnings li').first().waitFor();
  assert.match(await page.locator('[data-testid="cuped"]').textContent(), /CUPED-adjusted over 7 days/);
  const units = await page.locator('section.results table').first().textContent();
  assert.match(units, /\d{2,}/);
  await shot(page, 'experiment-results');
  await context.close();
});

test('rollouts, guards and webhooks are started, steered and removed from the UI', async () => {
  const { context, page } = await newPage();
  await signIn(page, ADMIN);
  await page.goto(`${URL_}/ui/rollouts`);
  await page.selectOption('#rollout-new select[name="flag"]', 'ui-checkout');
  await page.selectOption('#rollout-new select[name="environment"]', 'staging');
  await page.fill('#rollout-new input[name="stages"]', '10, 50, 100');
  await page.fill('#rollout-new input[name="hold"]', '1h');
  await page.fill('#rollout-new input[name="approvalAt"]', '50');
  await page.click('#rollout-new button[type="submit"]');
  await page.waitForURL(/\/ui\/rollouts\/.+/);
  await page.locator('dd', { hasText: 'stage 1 of 3' }).waitFor();
  await page.locator('ol.stages li', { hasText: '50 % (approval)' }).waitFor();
  await shot(page, 'rollout');
  await page.click('[data-act="pause"]');
  await confirm(page, {});
  await page.locator('.title .badge', { hasText: 'paused' }).waitFor();
  await page.click('[data-act="abort"]');
  await confirm(page, { reason: 'not today' });
  await page.locator('.title .badge', { hasText: 'aborted' }).waitFor();

  await page.goto(`${URL_}/ui/rollouts`);
  await page.selectOption('#guard-new select[name="flag"]', 'ui-checkout');
  await page.fill('#guard-new input[name="errors"]', 'checkout-error');
  await page.fill('#guard-new input[name="requests"]', 'checkout');
  await page.fill('#guard-new input[name="max"]', '0.2');
  await page.click('#guard-new button[type="submit"]');
  const guard = page.locator('tr', { hasText: 'ui-checkout' }).locator('[data-del-guard]');
  await guard.waitFor();
  await guard.click();
  await confirm(page, { button: 'Remove' });
  await page.locator('[data-del-guard]').first().waitFor({ state: 'detached' }).catch(() => {});

  await page.goto(`${URL_}/ui/settings`);
  await page.fill('#hook-new input[name="id"]', 'ui-hook');
  await page.fill('#hook-new input[name="url"]', 'https://hooks.example/switchyard');
  await page.fill('#hook-new input[name="events"]', 'flag.killed');
  await page.click('#hook-new button[type="submit"]');
  await page.locator('#secret-value').waitFor();
  assert.ok((await page.inputValue('#secret-value')).length >= 16, 'the signing secret is shown once');
  await page.click('[data-del-hook="ui-hook"]');
  await confirm(page, { button: 'Delete' });
  await page.locator('[data-del-hook="ui-hook"]').waitFor({ state: 'detached' });
  await context.close();
});

test('pages at phone width, keyboard focus, and no request to another host', async () => {
  const { context, page } = await newPage({ width: 390, height: 800 });
  await signIn(page, ADMIN);
  await page.locator('table.flags').waitFor();
  await shot(page, 'flags-phone');
  const wide = await page.evaluate(() => document.documentElement.scrollWidth);
  assert.ok(wide <= 420, `the page fits a phone (scroll width ${wide})`);
  // The first Tab reaches the skip link, then the navigation.
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement.textContent), 'Skip to content');
  await context.close();

  const { context: c2, page: p2 } = await newPage();
  await signIn(p2, ADMIN);
  await p2.locator('table.flags').waitFor();
  await shot(p2, 'flags');
  for (const where of ['/ui/rollouts', '/ui/requests', '/ui/schedules', '/ui/reports', '/ui/settings', '/ui/segments']) {
    await p2.goto(`${URL_}${where}`);
    await p2.locator('main h1').waitFor();
    assert.equal(await p2.locator('main h1', { hasText: 'Something went wrong' }).count(), 0, where);
  }
  await c2.close();
  const origin = new URL(URL_).origin;
  const elsewhere = requests.filter((u) => !u.startsWith(origin) && !u.startsWith('data:'));
  assert.deepEqual(elsewhere, [], 'every request goes to the server itself');
});
