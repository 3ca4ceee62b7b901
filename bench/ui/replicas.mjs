// The web UI on two replicas (docs/benchmarks.md): a flag list open on replica A follows kill
// switches flipped through replica B's API (how long until the page shows each), and a session
// opened on A is honoured by B until it signs out on A.
//   npm ci --prefix tests/ui    # playwright-core, once
//   node bench/ui/replicas.mjs http://127.0.0.1:18181 http://127.0.0.1:18182 "$ADMIN_TOKEN"
// (both replicas serving the example flags from the same PostgreSQL database; Chromium at
// /usr/bin/chromium).
import { chromium } from '../../tests/ui/node_modules/playwright-core/index.mjs';
const [A, B, T] = [process.argv[2], process.argv[3], process.argv[4]];
const b = await chromium.launch({ executablePath: '/usr/bin/chromium', headless: true, args: ['--no-sandbox'] });
const ctx = await b.newContext();
const p = await ctx.newPage();
await p.goto(A + '/ui');
await p.fill('#token', T);
await p.click('button[type="submit"]');
await p.goto(A + '/ui/flags?q=checkout-redesign');
await p.locator('#live.on').waitFor();
const api = (base, method, path, body) => fetch(base + path, { method, headers: { Authorization: `Bearer ${T}`, 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
for (let i = 0; i < 5; i++) {
  const target = i % 2 === 0 ? 'killed' : '5 %';
  const t0 = Date.now();
  const r = await api(B, i % 2 === 0 ? 'POST' : 'DELETE', '/api/v1/flags/checkout-redesign/environments/production/kill', { reason: 'replica test' });
  const t1 = Date.now();
  await p.locator('tr[data-flag="checkout-redesign"] .state[data-env="production"]', { hasText: target }).waitFor({ timeout: 10000 });
  console.log(`change on B (${r.status}, ${t1 - t0} ms to answer) visible on A's page after ${Date.now() - t0} ms`);
}
// The session cookie of A, used against B.
const cookie = (await ctx.cookies()).find((c) => c.name === 'sy_session');
const onB = await fetch(B + '/api/v1/session', { headers: { Cookie: `sy_session=${cookie.value}` } });
console.log('session opened on A, used on B:', onB.status, await onB.text());
await p.click('button:has-text("Sign out")');
const afterB = await fetch(B + '/api/v1/session', { headers: { Cookie: `sy_session=${cookie.value}` } });
console.log('after signing out on A, on B:', afterB.status);
await b.close();
