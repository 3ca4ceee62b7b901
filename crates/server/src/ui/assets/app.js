// Switchyard's web UI: draws each page from the admin API (the same calls the CLI makes), with
// the session cookie and the page's anti-forgery token. No framework, no build step, nothing
// fetched from another host. Pages: flags (list, page with its tabs), segments, experiments,
// rollouts and guards, schedules, approvals, audit log, reports, settings.
'use strict';

const CSRF = document.querySelector('meta[name="csrf-token"]').content;
const ROLE = document.body.dataset.role;
const USER = document.body.dataset.user;
const CAN_EDIT = ROLE === 'editor' || ROLE === 'admin';
const IS_ADMIN = ROLE === 'admin';
const main = document.getElementById('main');

// ---------------------------------------------------------------------------------------
// HTML with every interpolated value escaped (raw() marks trusted markup)

class Raw { constructor(html) { this.html = html; } toString() { return this.html; } }
const raw = (html) => new Raw(html);
function esc(value) {
  return String(value ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));
}
function piece(v) {
  if (v instanceof Raw) return v.html;
  if (Array.isArray(v)) return v.map(piece).join('');
  if (v === false || v === null || v === undefined) return '';
  return esc(v);
}
function h(strings, ...values) {
  let out = strings[0];
  values.forEach((v, i) => { out += piece(v) + strings[i + 1]; });
  return raw(out);
}
const json = (v) => JSON.stringify(v);
const short = (v) => { const s = typeof v === 'string' ? v : json(v); return s === undefined ? '—' : s; };

// ---------------------------------------------------------------------------------------
// The API

class ApiError extends Error {
  constructor(status, body) {
    const e = (body && body.error) || {};
    super(e.message || `request failed (${status})`);
    this.status = status; this.code = e.code; this.details = e.details || {};
  }
}

async function api(method, path, body, opts = {}) {
  const headers = { Accept: 'application/json' };
  if (method !== 'GET') headers['X-CSRF-Token'] = CSRF;
  let payload;
  if (body !== undefined) {
    if (typeof body === 'string') { headers['Content-Type'] = opts.type || 'application/yaml'; payload = body; }
    else { headers['Content-Type'] = 'application/json'; payload = JSON.stringify(body); }
  }
  if (opts.version !== undefined) headers['If-Match'] = `"${opts.version}"`;
  const res = await fetch(path, { method, headers, body: payload, credentials: 'same-origin' });
  if (res.status === 401) {
    toast('Your session has ended; sign in again.', 'error');
    setTimeout(() => location.reload(), 800);
  }
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = text; }
  if (!res.ok) throw new ApiError(res.status, data);
  return { status: res.status, data, etag: res.headers.get('ETag') };
}
const get = async (path) => (await api('GET', path)).data;
const enc = encodeURIComponent;

// ---------------------------------------------------------------------------------------
// Messages, dialogs

let toastTimer;
function toast(message, kind = 'ok') {
  const el = document.getElementById('toast');
  el.className = `toast ${kind}`;
  el.textContent = message;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { el.className = ''; el.textContent = ''; }, kind === 'error' ? 9000 : 4000);
}

/// A server error as a sentence, with each problem's place (field, line).
function errorHtml(err) {
  if (!(err instanceof ApiError)) return h`<p class="error" role="alert">${String(err && err.message || err)}</p>`;
  if (err.status === 409 && err.code === 'conflict' && /changed since you read it/.test(err.message)) {
    return h`<div class="error" role="alert"><strong>Someone else changed this since you opened it.</strong>
      <p>${err.message}</p><p>Nothing was saved. <button type="button" class="link" data-action="reload">Reload</button> to see their change, then make yours again.</p></div>`;
  }
  const problems = err.details.problems || [];
  return h`<div class="error" role="alert"><strong>${err.message}</strong>${problems.length > 1 || (problems[0] && problems[0].line) ? h`<ul>${problems.map((p) => h`<li>${p.line ? h`<span class="badge">line ${p.line}</span> ` : ''}${p.path ? h`<code>${p.path}</code>: ` : ''}${p.message}</li>`)}</ul>` : ''}</div>`;
}

function changesTable(changes) {
  if (!changes.length) return h`<p class="muted">This changes nothing.</p>`;
  return h`<table class="diff"><thead><tr><th>Field</th><th>Before</th><th>After</th></tr></thead><tbody>${changes.map((c) => h`<tr><td><code>${c.path}</code></td><td class="before">${c.before === undefined ? '—' : h`<code>${short(c.before)}</code>`}</td><td class="after">${c.after === undefined ? '(removed)' : h`<code>${short(c.after)}</code>`}</td></tr>`)}</tbody></table>`;
}

/// A modal dialog; resolves with the form's fields on submit, null when cancelled.
function dialog({ title, body, submit = 'Save', danger = false, reason = true }) {
  return new Promise((resolve) => {
    const d = document.createElement('dialog');
    d.innerHTML = piece(h`<form method="dialog" class="stack"><h2>${title}</h2>${body}
      ${reason ? h`<label>Reason (optional, kept in the audit log)<input name="reason" autocomplete="off" placeholder="why"></label>` : ''}
      <div class="row end"><button type="button" value="cancel" data-cancel>Cancel</button>
      <button type="submit" class="${danger ? 'danger' : 'primary'}" value="ok">${submit}</button></div></form>`);
    document.body.appendChild(d);
    const form = d.querySelector('form');
    const done = (value) => { d.close(); d.remove(); resolve(value); };
    d.querySelector('[data-cancel]').addEventListener('click', () => done(null));
    d.addEventListener('cancel', (e) => { e.preventDefault(); done(null); });
    form.addEventListener('submit', (e) => { e.preventDefault(); done(Object.fromEntries(new FormData(form))); });
    d.showModal();
    const first = d.querySelector('input[name="reason"]') || d.querySelector('button[type="submit"]');
    if (first) first.focus();
  });
}

/// Shows what a change would do (from the server's dry run), asks for a reason, applies it.
/// `preview()` answers the field changes; `apply(reason)` makes the change.
async function confirmChange({ title, preview, apply, danger = false, submit = 'Save', note }) {
  let changes;
  try { changes = await preview(); } catch (err) { showError(err); return false; }
  if (!changes.length) { toast('Nothing to change: it is already so.'); return false; }
  const answer = await dialog({ title, danger, submit, body: h`${note ? h`<p>${note}</p>` : ''}${changesTable(changes)}` });
  if (!answer) return false;
  try {
    const res = await apply(answer.reason || undefined);
    if (res && res.status === 202) {
      toast(`Waiting for approval: ${res.data.message}`, 'warn');
    } else toast('Saved.');
    return true;
  } catch (err) { showError(err); return false; }
}

function showError(err) {
  const box = document.getElementById('page-error');
  if (box) { box.innerHTML = piece(errorHtml(err)); box.scrollIntoView({ block: 'nearest' }); }
  toast(err.message || String(err), 'error');
}

// ---------------------------------------------------------------------------------------
// Routing and live updates

const routes = [];
const route = (re, view) => routes.push([re, view]);
let current = null; // { refresh(), dirty() }
let lastRevision = null;

function go(path, replace = false) {
  if (replace) history.replaceState(null, '', path); else history.pushState(null, '', path);
  render();
}

async function render() {
  const path = location.pathname.replace(/\/+$/, '') || '/ui';
  for (const a of document.querySelectorAll('header nav a')) {
    a.toggleAttribute('aria-current', path.startsWith(a.getAttribute('href')));
  }
  if (path === '/ui') return go('/ui/flags', true);
  for (const [re, view] of routes) {
    const m = path.match(re);
    if (m) {
      current = null;
      try {
        current = await view(...m.slice(1).map(decodeURIComponent));
      } catch (err) {
        main.innerHTML = piece(h`<h1>Something went wrong</h1>${errorHtml(err)}`);
      }
      return;
    }
  }
  main.innerHTML = piece(h`<h1>Not found</h1><p>No page ${path}. <a href="/ui/flags">Back to the flags.</a></p>`);
}

document.addEventListener('click', (e) => {
  const a = e.target.closest('a[href^="/ui"]');
  if (a && !e.ctrlKey && !e.metaKey && !e.shiftKey && a.target !== '_blank') {
    e.preventDefault();
    go(a.getAttribute('href'));
    return;
  }
  const reload = e.target.closest('[data-action="reload"]');
  if (reload) { e.preventDefault(); render(); }
});
window.addEventListener('popstate', render);

function startLive() {
  const dot = document.getElementById('live');
  const source = new EventSource('/api/v1/changes');
  source.addEventListener('open', () => {
    dot.className = 'live on'; dot.title = 'Live: changes made anywhere appear here';
    // What changed while the stream was down is redrawn once it is back.
    if (lastRevision !== null && current && current.refresh && !(current.dirty && current.dirty())) current.refresh();
  });
  source.addEventListener('error', () => {
    dot.className = 'live off'; dot.title = 'Live updates interrupted; reconnecting';
    // The browser retries a dropped stream by itself, but gives up on an error answer: then
    // the session may have ended (sign in again) or the server was away (try again soon).
    if (source.readyState === EventSource.CLOSED) {
      setTimeout(async () => {
        const res = await fetch('/api/v1/session', { credentials: 'same-origin' }).catch(() => null);
        if (res && res.status === 401) location.reload(); else startLive();
      }, 3000);
    }
  });
  source.addEventListener('change', (e) => {
    const { revision } = JSON.parse(e.data);
    if (lastRevision !== null && revision !== lastRevision && current && current.refresh) {
      if (current.dirty && current.dirty()) {
        const note = document.getElementById('changed-elsewhere');
        if (note) note.hidden = false;
      } else current.refresh();
    }
    lastRevision = revision;
  });
}

// ---------------------------------------------------------------------------------------
// Shared bits

let envCache = null;
async function environments(fresh = false) {
  if (!envCache || fresh) { const r = await get('/api/v1/environments'); envCache = Array.isArray(r) ? r : r.environments; }
  return envCache;
}

function when(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  return h`<time datetime="${iso}" title="${iso}">${d.toLocaleString()}</time>`;
}

/// A flag's effective state in one environment: on, off, killed, or a rollout percentage.
function envState(def, env) {
  const top = def; const e = (def.environments || {})[env] || {};
  const pick = (k) => (e[k] !== undefined ? e[k] : top[k]);
  if (top.killSwitch || e.killSwitch) return { label: 'killed', cls: 'killed', enabled: pick('enabled') !== false, killed: true };
  const enabled = pick('enabled') !== false;
  if (!enabled) return { label: 'off', cls: 'off', enabled, killed: false };
  const fall = pick('fallthrough') || {};
  if (typeof fall.percentage === 'number' && fall.percentage < 100) return { label: `${fall.percentage} %`, cls: 'partial', enabled, killed: false };
  return { label: 'on', cls: 'on', enabled, killed: false };
}
const eff = (def, env, k) => { const e = (def.environments || {})[env] || {}; return e[k] !== undefined ? e[k] : def[k]; };
const variantKeys = (def) => {
  const v = def.variants;
  if (!v) return def.type === 'boolean' || !def.type ? ['on', 'off'] : [];
  if (Array.isArray(v)) return v.map((x) => x.key);
  return Object.keys(v);
};

function pageShell(title, actions, body) {
  main.innerHTML = piece(h`<div class="title"><h1>${title}</h1><div class="actions">${actions || ''}</div></div>
    <div id="changed-elsewhere" class="notice" hidden>This changed elsewhere while you were editing. Saving will tell you if your edit conflicts; <button type="button" class="link" data-action="reload">reload</button> to see the latest.</div>
    <div id="page-error"></div>${body}`);
}
const readOnlyNote = () => (CAN_EDIT ? '' : h`<p class="notice">You are signed in as a viewer: you can look at everything, and change nothing.</p>`);
const disabledIfViewer = () => (CAN_EDIT ? '' : raw(' disabled title="Viewers cannot change flags"'));

// ---------------------------------------------------------------------------------------
// Flags: the list

route(/^\/ui\/flags$/, async () => {
  const params = new URLSearchParams(location.search);
  const state = { q: params.get('q') || '', tag: params.get('tag') || '', owner: params.get('owner') || '', env: params.get('env') || '', status: params.get('state') || '', stale: params.get('stale') === '1' };
  let flags = [], envs = [], stale = new Map();
  async function load() {
    const [list, e, s] = await Promise.all([get('/api/v1/flags'), environments(true), get('/api/v1/reports/stale-flags').catch(() => ({ flags: [] }))]);
    flags = list.flags; envs = e.map((x) => x.name); stale = new Map(s.flags.map((f) => [f.key, f.reasons]));
  }
  function matches(f) {
    const d = f.definition;
    const text = `${f.key} ${d.name || ''} ${d.description || ''}`.toLowerCase();
    if (state.q && !text.includes(state.q.toLowerCase())) return false;
    if (state.tag && !(d.tags || []).includes(state.tag)) return false;
    if (state.owner && d.owner !== state.owner) return false;
    if (state.stale && !stale.has(f.key)) return false;
    if (state.status) {
      if (state.status === 'archived') return f.archived;
      if (f.archived) return false;
      const st = state.env ? [envState(d, state.env)] : envs.map((e) => envState(d, e));
      if (state.status === 'killed') return st.some((s) => s.killed);
      if (state.status === 'enabled') return st.some((s) => s.enabled && !s.killed);
      if (state.status === 'disabled') return st.some((s) => !s.enabled && !s.killed);
    } else if (f.archived) return false;
    return true;
  }
  function draw() {
    const tags = [...new Set(flags.flatMap((f) => f.definition.tags || []))].sort();
    const owners = [...new Set(flags.map((f) => f.definition.owner).filter(Boolean))].sort();
    const shown = flags.filter(matches);
    const opt = (v, cur, label) => h`<option value="${v}"${v === cur ? raw(' selected') : ''}>${label || v}</option>`;
    pageShell('Flags', CAN_EDIT ? h`<a class="button primary" href="/ui/flags/new">New flag</a>` : '', h`
      ${readOnlyNote()}
      ${flags.length === 0 ? h`<div class="card empty"><h2>No flags yet</h2><p>Start from the flags this server was configured with, or from the examples.</p>${CAN_EDIT ? h`<button type="button" class="primary" id="init">Initialize flags</button>` : ''}</div>` : ''}
      <form class="filters" id="filters" role="search">
        <label>Search<input type="search" name="q" value="${state.q}" placeholder="key, name, description"></label>
        <label>Tag<select name="tag">${opt('', state.tag, 'any')}${tags.map((t) => opt(t, state.tag))}</select></label>
        <label>Owner<select name="owner">${opt('', state.owner, 'any')}${owners.map((o) => opt(o, state.owner))}</select></label>
        <label>State<select name="state">${opt('', state.status, 'active')}${['enabled', 'disabled', 'killed', 'archived'].map((s) => opt(s, state.status))}</select></label>
        <label>in<select name="env">${opt('', state.env, 'any environment')}${envs.map((e) => opt(e, state.env))}</select></label>
        <label class="check"><input type="checkbox" name="stale" value="1"${state.stale ? raw(' checked') : ''}> stale only</label>
      </form>
      <p class="muted small" id="count">${shown.length} of ${flags.length} flags</p>
      <div class="scroll"><table class="flags"><thead><tr><th>Flag</th><th>Owner</th><th>Tags</th>${envs.map((e) => h`<th>${e}</th>`)}<th>Updated</th></tr></thead>
      <tbody>${shown.map((f) => h`<tr data-flag="${f.key}">
        <td><a href="/ui/flags/${enc(f.key)}"><strong>${f.key}</strong></a>${f.definition.name ? h`<div class="muted small">${f.definition.name}</div>` : ''}
          ${stale.has(f.key) ? h`<span class="badge warn" title="${stale.get(f.key).join('; ')}">stale</span>` : ''}${f.archived ? h`<span class="badge">archived</span>` : ''}</td>
        <td>${f.definition.owner || ''}</td>
        <td>${(f.definition.tags || []).map((t) => h`<span class="tag">${t}</span> `)}</td>
        ${envs.map((e) => { const s = envState(f.definition, e); return h`<td><span class="state ${s.cls}" data-env="${e}">${s.label}</span></td>`; })}
        <td class="small">${when(f.updatedAt)}</td></tr>`)}</tbody></table></div>`);
    const form = document.getElementById('filters');
    form.addEventListener('input', () => {
      const data = new FormData(form);
      Object.assign(state, { q: data.get('q'), tag: data.get('tag'), owner: data.get('owner'), status: data.get('state'), env: data.get('env'), stale: data.get('stale') === '1' });
      const p = new URLSearchParams();
      for (const [k, v] of Object.entries({ q: state.q, tag: state.tag, owner: state.owner, state: state.status, env: state.env, stale: state.stale ? '1' : '' })) if (v) p.set(k, v);
      history.replaceState(null, '', `/ui/flags${p.toString() ? `?${p}` : ''}`);
      const focused = document.activeElement && document.activeElement.name;
      draw();
      if (focused) { const el = document.querySelector(`#filters [name="${focused}"]`); if (el) { el.focus(); if (el.setSelectionRange && el.type === 'search') el.setSelectionRange(el.value.length, el.value.length); } }
    });
    form.addEventListener('submit', (e) => e.preventDefault());
    const init = document.getElementById('init');
    if (init) init.addEventListener('click', async () => {
      try { const r = (await api('POST', '/api/v1/seed')).data; toast(`Created ${r.created.length} flags.`); await load(); draw(); } catch (err) { showError(err); }
    });
  }
  await load(); draw();
  return { refresh: async () => { await load(); draw(); } };
});

// ---------------------------------------------------------------------------------------
// Flags: a new one

route(/^\/ui\/flags\/new$/, async () => {
  const envs = (await environments(true)).map((e) => e.name);
  pageShell('New flag', '', h`
    <form class="card stack" id="new-flag">
      <label>Key<input name="key" required pattern="[A-Za-z0-9][A-Za-z0-9._\\-]*" placeholder="checkout-redesign" autocomplete="off"></label>
      <label>Name<input name="name" placeholder="What people call it"></label>
      <label>Description<textarea name="description" rows="2"></textarea></label>
      <label>Type<select name="type"><option value="boolean">boolean (on / off)</option><option value="string">string variants</option><option value="number">number variants</option><option value="object">JSON variants</option></select></label>
      <label>Variants (for non-boolean flags: one per line, <code>key: value</code>; the first is the default, served when the flag is off)<textarea name="variants" rows="3" placeholder="control: blue&#10;treatment: green"></textarea></label>
      <label>Owner<input name="owner" placeholder="team-checkout"></label>
      <label>Tags (comma-separated)<input name="tags"></label>
      <fieldset><legend>Start</legend>${envs.map((e) => h`<label class="check"><input type="checkbox" name="on-${e}"> on in ${e}</label>`)}<p class="muted small">Unticked environments start off.</p></fieldset>
      <div class="row end"><a class="button" href="/ui/flags">Cancel</a><button class="primary" type="submit"${disabledIfViewer()}>Create flag</button></div>
    </form>`);
  document.getElementById('new-flag').addEventListener('submit', async (e) => {
    e.preventDefault();
    const f = new FormData(e.target);
    const def = { key: f.get('key').trim(), enabled: false };
    for (const k of ['name', 'description', 'owner']) if (f.get(k).trim()) def[k] = f.get(k).trim();
    const tags = f.get('tags').split(',').map((t) => t.trim()).filter(Boolean);
    if (tags.length) def.tags = tags;
    const type = f.get('type');
    if (type !== 'boolean') {
      def.type = type;
      const variants = {};
      for (const line of f.get('variants').split('\n').map((l) => l.trim()).filter(Boolean)) {
        const i = line.indexOf(':');
        if (i < 1) { showError(new Error(`variant line "${line}" is not key: value`)); return; }
        variants[line.slice(0, i).trim()] = parseValue(line.slice(i + 1).trim());
      }
      if (!Object.keys(variants).length) { showError(new Error('a non-boolean flag needs at least one variant (key: value)')); return; }
      def.variants = variants;
      def.defaultVariant = Object.keys(variants)[0];
    }
    def.environments = {};
    for (const env of envs) if (f.get(`on-${env}`)) def.environments[env] = { enabled: true };
    try {
      const res = await api('POST', '/api/v1/flags', def);
      if (res.status === 202) { toast(res.data.message, 'warn'); go('/ui/requests'); return; }
      toast(`Created ${def.key}.`);
      go(`/ui/flags/${enc(def.key)}`);
    } catch (err) { showError(err); }
  });
  return {};
});

/// A typed value: JSON when it reads as JSON (numbers, true/false, lists, objects), else text.
function parseValue(text) {
  const t = String(text).trim();
  if (/^(-?\d+(\.\d+)?([eE][-+]?\d+)?|true|false|null|\[.*\]|\{.*\}|".*")$/s.test(t)) {
    try { return JSON.parse(t); } catch { /* text */ }
  }
  return t;
}
const showValue = (v) => (typeof v === 'string' ? v : json(v));

// ---------------------------------------------------------------------------------------
// Flags: one flag's page (tabs: overview, rules, evaluate, preview, YAML, audit, settings)

const TABS = [['overview', 'Overview'], ['rules', 'Rules'], ['evaluate', 'Evaluate'], ['preview', 'Rollout preview'], ['yaml', 'YAML'], ['audit', 'History'], ['settings', 'Settings']];

route(/^\/ui\/flags\/([^/]+)$/, async (key) => {
  const params = new URLSearchParams(location.search);
  const page = { tab: params.get('tab') || 'overview', env: params.get('env') || '', flag: null, envs: [], dirty: false, rules: null };
  async function load() {
    const [res, envs] = await Promise.all([api('GET', `/api/v1/flags/${enc(key)}`), environments()]);
    page.flag = res.data; page.envs = envs.map((e) => e.name);
    page.approval = new Map(envs.map((e) => [e.name, e.requireApproval]));
    if (!page.segments) page.segments = (await get('/api/v1/segments')).segments.map((x) => x.name);
    if (!page.env || !page.envs.includes(page.env)) page.env = page.envs.includes('production') ? 'production' : page.envs[0];
  }
  const base = () => `/api/v1/flags/${enc(key)}`;
  const envBase = () => `${base()}/environments/${enc(page.env)}`;
  function setUrl() { history.replaceState(null, '', `/ui/flags/${enc(key)}?tab=${page.tab}&env=${enc(page.env)}`); }

  /// A partial change with its dry run first, at the version shown.
  function partial(method, path, body, title, extra = {}) {
    return confirmChange({
      title, ...extra,
      preview: async () => (await api(method, `${path}?dryRun=true`, body, { version: page.flag.version })).data.changes,
      apply: (reason) => api(method, path, { ...body, reason }, { version: page.flag.version }),
    }).then(async (ok) => { if (ok) { page.dirty = false; page.rules = null; await load(); draw(); } return ok; });
  }

  function draw() {
    const f = page.flag; const d = f.definition;
    const tabs = h`<nav class="tabs" aria-label="Flag">${TABS.map(([id, label]) => h`<a href="/ui/flags/${enc(key)}?tab=${id}&env=${enc(page.env)}" data-tab="${id}"${id === page.tab ? raw(' aria-current="page"') : ''}>${label}</a>`)}</nav>`;
    const envPicker = h`<label class="env">Environment <select id="env-pick">${page.envs.map((e) => h`<option${e === page.env ? raw(' selected') : ''}>${e}</option>`)}</select></label>`;
    pageShell(h`<span class="muted">Flag</span> ${key}`, h`<span class="badge">version ${f.version}</span>${f.archived ? h`<span class="badge warn">archived</span>` : ''}`, h`
      ${d.name || d.description ? h`<p class="lead">${d.name ? h`<strong>${d.name}</strong>. ` : ''}${d.description || ''}</p>` : ''}
      ${readOnlyNote()}${tabs}<div class="tabbar">${envPicker}${page.approval.get(page.env) ? h`<span class="badge warn" title="A person's change here waits for someone else's approval">changes need approval in ${page.env}</span>` : ''}</div>
      <section id="tab" class="tab-body"></section>`);
    document.getElementById('env-pick').addEventListener('change', (e) => { page.env = e.target.value; page.rules = null; page.dirty = false; setUrl(); draw(); });
    for (const a of main.querySelectorAll('[data-tab]')) a.addEventListener('click', (e) => { e.preventDefault(); e.stopPropagation(); page.tab = a.dataset.tab; setUrl(); draw(); });
    const body = document.getElementById('tab');
    ({ overview, rules, evaluate, preview, yaml, audit, settings })[page.tab]?.(body);
  }

  // -- overview: on/off, kill switch, rollout, individual targets, organizations
  function overview(body) {
    const d = page.flag.definition; const env = page.env;
    const rows = page.envs.map((e) => {
      const s = envState(d, e);
      return h`<tr><th scope="row">${e}</th><td><span class="state ${s.cls}">${s.label}</span></td>
        <td><button type="button" role="switch" aria-checked="${s.enabled}" class="switch" data-toggle="${e}" aria-label="${s.enabled ? 'Disable' : 'Enable'} in ${e}"${disabledIfViewer()}>${s.enabled ? 'Enabled' : 'Disabled'}</button></td>
        <td>${s.killed ? h`<button type="button" data-release="${e}"${disabledIfViewer()}>Release kill switch</button>` : h`<button type="button" class="danger" data-kill="${e}"${disabledIfViewer()}>Kill switch</button>`}</td></tr>`;
    });
    const fall = eff(d, env, 'fallthrough') || {};
    const pct = typeof fall.percentage === 'number' ? fall.percentage : 100;
    const targets = eff(d, env, 'targets') || [];
    const tenants = eff(d, env, 'tenants') || {};
    const prereqs = eff(d, env, 'prerequisites') || [];
    const variants = variantKeys(d);
    body.innerHTML = piece(h`
      <div class="card"><h2>State by environment</h2><table class="states"><thead><tr><th>Environment</th><th>Serving</th><th>On / off</th><th>Emergency</th></tr></thead><tbody>${rows}</tbody></table>
        <p class="muted small">A kill switch serves the default (off) variant at once, on every replica, and is never held for approval.</p></div>
      <div class="grid2">
      <form class="card stack" id="rollout"><h2>Rollout in ${env}</h2>
        <p class="muted small">The share of units that get ${fall.variant ? h`<code>${fall.variant}</code>` : 'the flag'} when no target or rule decided (the fallthrough). Units keep their bucket as it grows.</p>
        <div class="row"><input type="range" min="0" max="100" step="0.1" name="pct" value="${pct}" aria-label="Rollout percentage"${disabledIfViewer()}><input type="number" min="0" max="100" step="0.001" name="pctn" value="${pct}" class="narrow-num" aria-label="Rollout percentage (number)"${disabledIfViewer()}> %</div>
        ${variants.length > 2 || d.type && d.type !== 'boolean' ? h`<label>Variant rolled out<select name="variant"><option value="">(what the fallthrough serves)</option>${variants.map((v) => h`<option${v === fall.variant ? raw(' selected') : ''}>${v}</option>`)}</select></label>` : ''}
        <div class="row end"><a class="button" href="/ui/flags/${enc(key)}?tab=preview&env=${enc(env)}">Preview on ids</a><button class="primary" type="submit"${disabledIfViewer()}>Set rollout</button></div></form>
      <form class="card stack" id="targets"><h2>Individual targets in ${env}</h2>
        <p class="muted small">These ids always get the variant given, before any rule.</p>
        <div id="target-rows">${(targets.length ? targets : []).map((t, i) => targetRow(t, i, variants))}</div>
        <div class="row"><button type="button" id="add-target"${disabledIfViewer()}>Add target</button><span class="grow"></span><button class="primary" type="submit"${disabledIfViewer()}>Save targets</button></div></form>
      </div>
      <div class="grid2">
      <div class="card"><h2>Organizations in ${env}</h2>
        <p class="muted small">Turn the flag on or off for one organization (tenant attribute <code>${d.tenantAttribute || 'tenant.id'}</code>) whatever everyone else gets.</p>
        ${Object.keys(tenants).length ? h`<table><thead><tr><th>Organization</th><th>Override</th><th></th></tr></thead><tbody>${Object.entries(tenants).map(([t, o]) => h`<tr><td><code>${t}</code></td><td>${o.variant ? h`variant <code>${o.variant}</code>` : o.enabled === false ? 'off' : 'on'}</td><td><button type="button" class="link" data-clear-tenant="${t}"${disabledIfViewer()}>remove</button></td></tr>`)}</tbody></table>` : h`<p class="muted">No organization overrides here.</p>`}
        <form class="row" id="tenant-form"><input name="tenant" placeholder="organization id" required aria-label="Organization id"${disabledIfViewer()}><select name="setting" aria-label="Override"><option value="on">on</option><option value="off">off</option>${variants.filter((v) => !['on', 'off'].includes(v)).map((v) => h`<option value="variant:${v}">variant ${v}</option>`)}</select><button type="submit"${disabledIfViewer()}>Set</button></form></div>
      <div class="card"><h2>Prerequisites and segments</h2>
        ${prereqs.length ? h`<ul>${prereqs.map((p) => h`<li>needs <a href="/ui/flags/${enc(p.flag)}">${p.flag}</a> ${p.variant ? h`to serve <code>${p.variant}</code>` : p.variants ? h`to serve one of <code>${p.variants.join(', ')}</code>` : 'to be on'}</li>`)}</ul>` : h`<p class="muted">No prerequisites in ${env}.</p>`}
        <p class="muted small">Segments used by the rules: ${segmentsUsed(eff(d, env, 'rules') || []).map((s) => h`<a href="/ui/segments/${enc(s)}">${s}</a> `)}${segmentsUsed(eff(d, env, 'rules') || []).length ? '' : 'none'}. Prerequisites are edited in the YAML tab.</p></div>
      </div>`);
    for (const b of body.querySelectorAll('[data-toggle]')) b.addEventListener('click', () => {
      const e = b.dataset.toggle; const on = b.getAttribute('aria-checked') !== 'true';
      partial('PUT', `${base()}/environments/${enc(e)}/enabled`, { enabled: on }, `${on ? 'Enable' : 'Disable'} ${key} in ${e}?`, { submit: on ? 'Enable' : 'Disable' });
    });
    for (const b of body.querySelectorAll('[data-kill]')) b.addEventListener('click', () => {
      const e = b.dataset.kill;
      partial('POST', `${base()}/environments/${enc(e)}/kill`, {}, `Kill ${key} in ${e}?`, { danger: true, submit: 'Kill it', note: 'Every application stops getting this flag’s feature in this environment within a second: they get its off / default variant.' });
    });
    for (const b of body.querySelectorAll('[data-release]')) b.addEventListener('click', () => {
      const e = b.dataset.release;
      partial('DELETE', `${base()}/environments/${enc(e)}/kill`, {}, `Release the kill switch of ${key} in ${e}?`, { submit: 'Release' });
    });
    const ro = body.querySelector('#rollout');
    ro.pct.addEventListener('input', () => { ro.pctn.value = ro.pct.value; });
    ro.pctn.addEventListener('input', () => { ro.pct.value = ro.pctn.value; });
    ro.addEventListener('submit', (e) => {
      e.preventDefault();
      const percentage = Number(ro.pctn.value);
      const b = { percentage }; if (ro.variant && ro.variant.value) b.variant = ro.variant.value;
      partial('PUT', `${envBase()}/rollout`, b, `Roll ${key} out to ${percentage} % in ${page.env}?`);
    });
    const tg = body.querySelector('#targets');
    body.querySelector('#add-target').addEventListener('click', () => {
      const rows = body.querySelector('#target-rows');
      rows.insertAdjacentHTML('beforeend', piece(targetRow({ values: [] }, rows.children.length, variants)));
      page.dirty = true;
    });
    tg.addEventListener('input', () => { page.dirty = true; });
    tg.addEventListener('click', (e) => { const r = e.target.closest('[data-remove-target]'); if (r) { r.closest('.target').remove(); page.dirty = true; } });
    tg.addEventListener('submit', (e) => {
      e.preventDefault();
      const list = [...tg.querySelectorAll('.target')].map((row) => {
        const t = { values: row.querySelector('[name="values"]').value.split(',').map((v) => parseValue(v)).filter((v) => v !== '') };
        const variant = row.querySelector('[name="variant"]').value; if (variant) t.variant = variant;
        const attribute = row.querySelector('[name="attribute"]').value.trim(); if (attribute) t.attribute = attribute;
        return t;
      }).filter((t) => t.values.length);
      partial('PUT', `${envBase()}/targets`, { targets: list }, `Save the individual targets of ${key} in ${page.env}?`);
    });
    body.querySelector('#tenant-form').addEventListener('submit', (e) => {
      e.preventDefault();
      const t = e.target.tenant.value.trim(); const s = e.target.setting.value;
      const b = s.startsWith('variant:') ? { variant: s.slice(8) } : { enabled: s === 'on' };
      partial('PUT', `${envBase()}/tenants/${enc(t)}`, b, `Override ${key} for organization ${t} in ${page.env}?`);
    });
    for (const b of body.querySelectorAll('[data-clear-tenant]')) b.addEventListener('click', () => {
      partial('DELETE', `${envBase()}/tenants/${enc(b.dataset.clearTenant)}`, {}, `Remove the override of organization ${b.dataset.clearTenant}?`, { submit: 'Remove' });
    });
  }
  function targetRow(t, i, variants) {
    return h`<div class="target row"><label class="grow">Ids<input name="values" value="${(t.values || []).map(showValue).join(', ')}" placeholder="user-1, user-2"${disabledIfViewer()}></label>
      <label>get<select name="variant"${disabledIfViewer()}>${variants.map((v) => h`<option${v === t.variant ? raw(' selected') : ''}>${v}</option>`)}</select></label>
      <label>attribute<input name="attribute" value="${t.attribute || ''}" placeholder="targetingKey" class="narrow"${disabledIfViewer()}></label>
      <button type="button" class="link" data-remove-target aria-label="Remove target ${i + 1}"${disabledIfViewer()}>remove</button></div>`;
  }

  // -- rules: the ordered rule editor
  function rules(body) {
    const d = page.flag.definition; const variants = variantKeys(d);
    if (!page.rules) page.rules = structuredClone(eff(d, page.env, 'rules') || []);
    const R = page.rules;
    const ops = ['equals', 'not_equals', 'in', 'not_in', 'contains', 'not_contains', 'starts_with', 'ends_with', 'gt', 'gte', 'lt', 'lte', 'regex', 'semver_eq', 'semver_gt', 'semver_gte', 'semver_lt', 'semver_lte', 'before', 'after', 'in_segment', 'not_in_segment'];
    const condRow = (c, ri, ci) => {
      if (c.attribute === undefined && c.operator !== 'in_segment' && c.operator !== 'not_in_segment' && (c.all || c.any || c.not)) {
        return h`<div class="cond row" data-ci="${ci}"><label class="grow">Nested condition (JSON)<textarea name="nested" rows="2">${json(c)}</textarea></label><button type="button" class="link" data-remove-cond>remove</button></div>`;
      }
      const v = c.value === undefined ? '' : Array.isArray(c.value) ? c.value.map(showValue).join(', ') : showValue(c.value);
      return h`<div class="cond row" data-ci="${ci}">
        <input name="attribute" value="${c.attribute || ''}" placeholder="attribute (email, tenant.id)" aria-label="Rule ${ri + 1} condition ${ci + 1} attribute"${disabledIfViewer()}>
        <select name="operator" aria-label="Rule ${ri + 1} condition ${ci + 1} operator"${disabledIfViewer()}>${ops.map((o) => h`<option${o === c.operator ? raw(' selected') : ''}>${o}</option>`)}</select>
        <input name="value" class="grow" value="${v}" placeholder="value (lists: a, b, c)" aria-label="Rule ${ri + 1} condition ${ci + 1} value"${['in_segment', 'not_in_segment'].includes(c.operator) ? raw(' list="segment-names"') : ''}${disabledIfViewer()}>
        <button type="button" data-move-cond="-1" aria-label="Move condition ${ci + 1} of rule ${ri + 1} up"${ci === 0 ? raw(' disabled') : disabledIfViewer()}>↑</button>
        <button type="button" class="link" data-remove-cond aria-label="Remove condition ${ci + 1} of rule ${ri + 1}"${disabledIfViewer()}>remove</button></div>`;
    };
    const serveBlock = (r, ri) => {
      const isSplit = !!r.split;
      const total = isSplit ? Object.values(r.split).reduce((a, b) => a + Number(b || 0), 0) : 100;
      return h`<div class="serve row"><label>Serve<select name="serve-kind" aria-label="Rule ${ri + 1} serves"${disabledIfViewer()}><option value="variant"${!isSplit ? raw(' selected') : ''}>one variant</option><option value="split"${isSplit ? raw(' selected') : ''}>a split</option></select></label>
        ${isSplit ? h`${variants.map((v) => h`<label>${v}<input type="number" min="0" max="100" step="0.001" name="w-${v}" value="${r.split[v] ?? 0}" class="narrow-num"${disabledIfViewer()}> %</label>`)}<span class="badge ${Math.abs(total - 100) < 1e-9 ? 'ok' : 'warn'}" data-total>total ${Math.round(total * 1000) / 1000} %</span>`
          : h`<select name="variant" aria-label="Rule ${ri + 1} variant"${disabledIfViewer()}>${variants.map((v) => h`<option${v === r.variant ? raw(' selected') : ''}>${v}</option>`)}</select>`}
        <label>to<input type="number" min="0" max="100" step="0.001" name="percentage" value="${r.percentage ?? ''}" placeholder="100" class="narrow-num" aria-label="Rule ${ri + 1} percentage"${disabledIfViewer()}> % of matches</label></div>`;
    };
    body.innerHTML = piece(h`<datalist id="segment-names">${(page.segments || []).map((n) => h`<option value="${n}"></option>`)}</datalist><form id="rules-form" class="stack">
      <p class="muted">Rules are checked in order after the individual targets; the first whose conditions all hold decides. Environment: <strong>${page.env}</strong>.</p>
      ${R.length ? '' : h`<p class="card muted">No rules in ${page.env}: everyone gets the fallthrough.</p>`}
      ${R.map((r, ri) => h`<fieldset class="card rule" data-ri="${ri}"><legend>Rule ${ri + 1}${r.id ? h` <code>${r.id}</code>` : ''}</legend>
        <div class="row"><input name="description" class="grow" value="${r.description || ''}" placeholder="what this rule is for" aria-label="Rule ${ri + 1} description"${disabledIfViewer()}>
          <button type="button" data-move="-1" aria-label="Move rule ${ri + 1} up"${ri === 0 ? raw(' disabled') : disabledIfViewer()}>↑</button><button type="button" data-move="1" aria-label="Move rule ${ri + 1} down"${ri === R.length - 1 ? raw(' disabled') : disabledIfViewer()}>↓</button>
          <button type="button" class="link danger-text" data-remove-rule${disabledIfViewer()}>remove rule</button></div>
        <div class="conds">${(r.conditions || []).map((c, ci) => condRow(c, ri, ci))}</div>
        <button type="button" class="link" data-add-cond${disabledIfViewer()}>+ condition</button>${serveBlock(r, ri)}</fieldset>`)}
      <div class="row"><button type="button" id="add-rule"${disabledIfViewer()}>Add rule</button><span class="grow"></span>
        <button type="button" id="reset-rules">Discard edits</button><button type="submit" class="primary"${disabledIfViewer()}>Review and save</button></div></form>`);
    const form = body.querySelector('#rules-form');
    const read = () => {
      page.rules = [...form.querySelectorAll('.rule')].map((fs) => {
        const ri = Number(fs.dataset.ri); const old = R[ri] || {};
        const rule = {};
        if (old.id) rule.id = old.id;
        const desc = fs.querySelector('[name="description"]').value.trim(); if (desc) rule.description = desc;
        rule.conditions = [...fs.querySelectorAll('.cond')].map((c) => {
          const nested = c.querySelector('[name="nested"]');
          if (nested) { try { return JSON.parse(nested.value); } catch { throw new Error(`rule ${ri + 1}: the nested condition is not valid JSON`); } }
          const op = c.querySelector('[name="operator"]').value;
          const text = c.querySelector('[name="value"]').value;
          const cond = { operator: op };
          const attr = c.querySelector('[name="attribute"]').value.trim(); if (attr) cond.attribute = attr;
          if (['in', 'not_in'].includes(op)) cond.value = text.split(',').map((v) => parseValue(v)).filter((v) => v !== '');
          else if (['in_segment', 'not_in_segment'].includes(op)) cond.value = text.includes(',') ? text.split(',').map((v) => v.trim()).filter(Boolean) : text.trim();
          else if (op.startsWith('semver') || ['starts_with', 'ends_with', 'contains', 'not_contains', 'regex'].includes(op)) cond.value = text;
          else cond.value = parseValue(text);
          return cond;
        });
        if (fs.querySelector('[name="serve-kind"]').value === 'split') {
          rule.split = {};
          for (const v of variants) { const inp = fs.querySelector(`[name="w-${v}"]`); rule.split[v] = inp ? Number(inp.value || 0) : 0; }
        } else {
          const sel = fs.querySelector('[name="variant"]'); rule.variant = sel ? sel.value : variants[0];
        }
        const pct = fs.querySelector('[name="percentage"]').value; if (pct !== '') rule.percentage = Number(pct);
        if (old.bucketBy) rule.bucketBy = old.bucketBy; if (old.salt) rule.salt = old.salt;
        return rule;
      });
    };
    const redraw = () => { rules(body); };
    form.addEventListener('input', (e) => { page.dirty = true; if (e.target.name && e.target.name.startsWith('w-')) { try { read(); redraw(); const el = body.querySelector(`[data-ri="${e.target.closest('.rule').dataset.ri}"] [name="${e.target.name}"]`); if (el) el.focus(); } catch { /* shown on save */ } } });
    form.addEventListener('change', (e) => { if (e.target.name === 'operator') { try { read(); redraw(); } catch { /* shown on save */ } return; } if (e.target.name === 'serve-kind') { read(); const ri = Number(e.target.closest('.rule').dataset.ri); const r = page.rules[ri]; if (e.target.value === 'split') { delete r.variant; r.split = Object.fromEntries(variants.map((v, i) => [v, i === 0 ? 100 : 0])); } else { delete r.split; r.variant = variants[0]; } redraw(); } });
    form.addEventListener('click', (e) => {
      const t = e.target; const fs = t.closest('.rule');
      try {
        if (t.matches('[data-move]')) { read(); const i = Number(fs.dataset.ri); const j = i + Number(t.dataset.move); [page.rules[i], page.rules[j]] = [page.rules[j], page.rules[i]]; page.dirty = true; redraw(); }
        else if (t.matches('[data-remove-rule]')) { read(); page.rules.splice(Number(fs.dataset.ri), 1); page.dirty = true; redraw(); }
        else if (t.matches('[data-add-cond]')) { read(); page.rules[Number(fs.dataset.ri)].conditions.push({ attribute: '', operator: 'equals', value: '' }); page.dirty = true; redraw(); }
        else if (t.matches('[data-move-cond]')) { read(); const r = page.rules[Number(fs.dataset.ri)]; const i = Number(t.closest('.cond').dataset.ci); const j = i + Number(t.dataset.moveCond); [r.conditions[i], r.conditions[j]] = [r.conditions[j], r.conditions[i]]; page.dirty = true; redraw(); }
        else if (t.matches('[data-remove-cond]')) { t.closest('.cond').remove(); read(); page.dirty = true; redraw(); }
        else if (t.id === 'add-rule') { read(); page.rules.push({ conditions: [{ attribute: '', operator: 'equals', value: '' }], variant: variants[0] }); page.dirty = true; redraw(); }
        else if (t.id === 'reset-rules') { page.rules = null; page.dirty = false; redraw(); }
      } catch (err) { showError(err); }
    });
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      try { read(); } catch (err) { showError(err); return; }
      for (const [i, r] of page.rules.entries()) {
        if (r.split) { const total = Object.values(r.split).reduce((a, b) => a + b, 0); if (Math.abs(total - 100) > 1e-9) { showError(new Error(`rule ${i + 1}: the split adds up to ${total} %, not 100 %`)); return; } }
      }
      partial('PUT', `${envBase()}/rules`, { rules: page.rules }, `Save the rules of ${key} in ${page.env}?`);
    });
  }

  // -- evaluate: why does this unit see this?
  function evaluate(body) {
    const saved = sessionStorage.getItem('sy-context') || '{\n  "targetingKey": "user-1"\n}';
    body.innerHTML = piece(h`<div class="grid2"><form class="card stack" id="eval-form"><h2>Evaluate in ${page.env}</h2>
      <label>Context (JSON)<textarea name="context" rows="8" spellcheck="false" class="code">${saved}</textarea></label>
      <div class="row end"><button class="primary" type="submit">Evaluate</button></div></form>
      <div class="card" id="eval-result" aria-live="polite"><p class="muted">The value, the variant, the reason, and every step the engine checked appear here.</p></div></div>`);
    body.querySelector('#eval-form').addEventListener('submit', async (e) => {
      e.preventDefault();
      const out = body.querySelector('#eval-result');
      let context;
      try { context = JSON.parse(e.target.context.value); } catch (err) { out.innerHTML = piece(h`<p class="error">The context is not valid JSON: ${err.message}</p>`); return; }
      sessionStorage.setItem('sy-context', e.target.context.value);
      try {
        const r = (await api('POST', `${base()}/evaluate`, { environment: page.env, context })).data;
        out.innerHTML = piece(h`<h2>Result</h2><dl class="facts"><dt>Value</dt><dd><code data-testid="eval-value">${short(r.value)}</code></dd><dt>Variant</dt><dd><code data-testid="eval-variant">${r.variant || '—'}</code></dd>
          <dt>Reason</dt><dd><span class="badge" data-testid="eval-reason">${r.reason}</span>${r.decidedBy ? h` by ${r.decidedBy}` : ''}${r.ruleId ? h` (rule <code>${r.ruleId}</code>)` : ''}</dd>
          ${r.errorCode ? h`<dt>Error</dt><dd class="error">${r.errorCode}: ${r.errorMessage}</dd>` : ''}</dl>
          <h3>Explain trace</h3><ol class="trace">${r.steps.map((s, i) => h`<li class="${i === r.steps.length - 1 ? 'decided' : ''}">${stepHtml(s)}</li>`)}</ol>`);
      } catch (err) { out.innerHTML = piece(errorHtml(err)); }
    });
  }

  // -- preview: how many of these ids get each variant
  function preview(body) {
    const d = page.flag.definition;
    const fall = eff(d, page.env, 'fallthrough') || {};
    body.innerHTML = piece(h`<div class="grid2"><form class="card stack" id="preview-form"><h2>Rollout preview in ${page.env}</h2>
      <p class="muted small">Paste ids (one per line, or commas) or upload a JSON Lines file; the engine counts what each would get — with the served definition, or with another rollout percentage.</p>
      <label>Ids<textarea name="ids" rows="8" spellcheck="false" class="code" placeholder="user-1&#10;user-2"></textarea></label>
      <label>or a JSON Lines file (one id, or an object with the attribute, per line)<input type="file" name="file" accept=".jsonl,.ndjson,.txt,application/x-ndjson"></label>
      <label>Each id is the attribute<input name="attribute" value="targetingKey"></label>
      <label>Try a rollout percentage (blank: as served)<input type="number" name="pct" min="0" max="100" step="0.001" placeholder="${typeof fall.percentage === 'number' ? fall.percentage : 100}"></label>
      <div class="row end"><button type="submit" class="primary">Count</button></div></form>
      <div class="card" id="preview-result" aria-live="polite"><p class="muted">Counts appear here.</p></div></div>`);
    body.querySelector('#preview-form').addEventListener('submit', async (e) => {
      e.preventDefault();
      const f = e.target; const out = body.querySelector('#preview-result');
      const attribute = f.attribute.value.trim() || 'targetingKey';
      let units = f.ids.value.split(/[\n,]/).map((s) => s.trim()).filter(Boolean);
      const file = f.file.files[0];
      if (file) {
        for (const line of (await file.text()).split('\n').map((l) => l.trim()).filter(Boolean)) {
          let v; try { v = JSON.parse(line); } catch { v = line; }
          if (v && typeof v === 'object') v = attribute.split('.').reduce((o, k) => (o == null ? undefined : o[k]), v);
          if (v !== undefined && v !== null) units.push(String(v));
        }
      }
      if (!units.length) { out.innerHTML = piece(h`<p class="error">Give at least one id.</p>`); return; }
      const req = { environment: page.env, units, attribute };
      if (f.pct.value !== '') {
        const draft = structuredClone(d);
        const target = draft.environments && draft.environments[page.env] && draft.environments[page.env].fallthrough ? draft.environments[page.env] : draft.environments && draft.environments[page.env] ? draft.environments[page.env] : draft;
        target.fallthrough = { ...(eff(d, page.env, 'fallthrough') || {}), percentage: Number(f.pct.value) };
        if (!target.fallthrough.variant && !target.fallthrough.split) target.fallthrough.variant = variantKeys(d)[0];
        req.definition = draft;
      }
      try {
        const r = (await api('POST', `${base()}/preview`, req)).data;
        out.innerHTML = piece(h`<h2>${r.total} ids</h2><table class="bars"><tbody>${r.variants.map((v) => { const share = r.total ? (100 * v.units) / r.total : 0; return h`<tr><th scope="row"><code>${v.variant}</code></th><td class="num" data-testid="preview-${v.variant}">${v.units}</td><td class="num">${share.toFixed(1)} %</td><td class="barcell"><svg viewBox="0 0 100 8" preserveAspectRatio="none" aria-hidden="true"><rect width="${share}" height="8"></rect></svg></td></tr>`; })}</tbody></table>`);
      } catch (err) { out.innerHTML = piece(errorHtml(err)); }
    });
  }

  // -- YAML: the raw definition, validated by the engine as you type
  function yaml(body) {
    body.innerHTML = piece(h`<form class="card stack" id="yaml-form"><h2>Definition (YAML)</h2>
      <p class="muted small">The whole flag as the flag format writes it (docs/flag-format.md). Checked by the same compiler as a save; errors name their line.</p>
      <textarea name="text" rows="22" spellcheck="false" class="code" aria-label="YAML definition"${disabledIfViewer()}>Loading…</textarea>
      <div id="yaml-check" aria-live="polite"></div>
      <div class="row end"><button type="button" id="yaml-reset">Discard edits</button><button type="submit" class="primary"${disabledIfViewer()}>Review and save</button></div></form>`);
    const form = body.querySelector('#yaml-form'); const out = body.querySelector('#yaml-check');
    const check = async () => (await api('POST', `${base()}/check`, form.text.value, { type: 'application/yaml' })).data;
    const load = async () => { const r = (await api('POST', `${base()}/check`, { definition: page.flag.definition, version: page.flag.version })).data; form.text.value = r.yaml; page.dirty = false; out.innerHTML = ''; };
    load().catch((err) => { out.innerHTML = piece(errorHtml(err)); });
    let timer;
    form.text.addEventListener('input', () => {
      page.dirty = true; clearTimeout(timer);
      timer = setTimeout(async () => {
        try { const r = await check(); out.innerHTML = piece(h`<p class="ok">Valid. ${r.changes.length} field${r.changes.length === 1 ? '' : 's'} would change.</p>`); } catch (err) { out.innerHTML = piece(errorHtml(err)); }
      }, 400);
    });
    body.querySelector('#yaml-reset').addEventListener('click', () => load());
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      let checked;
      try { checked = await check(); } catch (err) { out.innerHTML = piece(errorHtml(err)); return; }
      confirmChange({
        title: `Save the definition of ${key}?`,
        preview: async () => checked.changes,
        apply: (reason) => api('PUT', base(), { definition: checked.definition, reason }, { version: page.flag.version }),
      }).then(async (ok) => { if (ok) { page.dirty = false; await load_(); draw(); } });
    });
  }

  // -- history: this flag's audit entries
  async function audit(body) {
    body.innerHTML = piece(h`<p class="muted">Loading…</p>`);
    const entries = (await get(`/api/v1/audit?flag=${enc(key)}&limit=100`)).entries;
    body.innerHTML = piece(auditTable(entries, false));
  }

  // -- settings: name, description, owner, tags, lifecycle; archive, delete
  function settings(body) {
    const d = page.flag.definition; const lc = d.lifecycle || {};
    body.innerHTML = piece(h`<form class="card stack" id="meta-form"><h2>About this flag</h2>
      <label>Name<input name="name" value="${d.name || ''}"${disabledIfViewer()}></label>
      <label>Description<textarea name="description" rows="2"${disabledIfViewer()}>${d.description || ''}</textarea></label>
      <label>Owner<input name="owner" value="${d.owner || ''}"${disabledIfViewer()}></label>
      <label>Tags (comma-separated)<input name="tags" value="${(d.tags || []).join(', ')}"${disabledIfViewer()}></label>
      <label>Expected removal (date)<input type="date" name="expectedRemoval" value="${lc.expectedRemoval || ''}"${disabledIfViewer()}></label>
      <div class="row end"><button type="submit" class="primary"${disabledIfViewer()}>Review and save</button></div></form>
      <div class="card"><h2>Lifecycle</h2><p>${page.flag.archived ? 'Archived: kept, not served.' : 'Served.'} Created ${when(page.flag.createdAt)}, updated ${when(page.flag.updatedAt)}.</p>
      <div class="row">${page.flag.archived ? h`<button type="button" id="unarchive"${disabledIfViewer()}>Serve again (unarchive)</button>` : h`<button type="button" id="archive"${disabledIfViewer()}>Archive</button>`}</div></div>`);
    const form = body.querySelector('#meta-form');
    form.addEventListener('input', () => { page.dirty = true; });
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      const next = structuredClone(d);
      for (const k of ['name', 'description', 'owner']) { const v = form[k].value.trim(); if (v) next[k] = v; else delete next[k]; }
      const tags = form.tags.value.split(',').map((t) => t.trim()).filter(Boolean); if (tags.length) next.tags = tags; else delete next.tags;
      const removal = form.expectedRemoval.value;
      next.lifecycle = { ...(next.lifecycle || {}) }; if (removal) next.lifecycle.expectedRemoval = removal; else delete next.lifecycle.expectedRemoval;
      if (!Object.keys(next.lifecycle).length) delete next.lifecycle;
      let checked;
      try { checked = (await api('POST', `${base()}/check`, { definition: next })).data; } catch (err) { showError(err); return; }
      confirmChange({ title: `Save ${key}?`, preview: async () => checked.changes, apply: (reason) => api('PUT', base(), { definition: checked.definition, reason }, { version: page.flag.version }) })
        .then(async (ok) => { if (ok) { page.dirty = false; await load_(); draw(); } });
    });
    const ar = body.querySelector('#archive'); const un = body.querySelector('#unarchive');
    if (ar) ar.addEventListener('click', () => partial('POST', `${base()}/archive`, {}, `Archive ${key}?`, { note: 'It stops being served (evaluations answer FLAG_NOT_FOUND); it can be served again.', submit: 'Archive' }));
    if (un) un.addEventListener('click', () => partial('POST', `${base()}/unarchive`, {}, `Serve ${key} again?`, { submit: 'Unarchive' }));
  }

  const load_ = load;
  await load(); draw();
  return {
    refresh: async () => { await load(); draw(); },
    dirty: () => page.dirty,
  };
});

function segmentsUsed(rules) {
  const out = new Set();
  const walk = (c) => { if (!c) return; if (['in_segment', 'not_in_segment'].includes(c.operator)) [].concat(c.value).forEach((s) => out.add(String(s))); (c.all || []).forEach(walk); (c.any || []).forEach(walk); walk(c.not); };
  for (const r of rules) (r.conditions || []).forEach(walk);
  return [...out];
}

/// One step of an explain trace: its name, its facts, and any checks below it.
function stepHtml(s) {
  const { step, ...rest } = s;
  const facts = []; const nested = [];
  for (const [k, v] of Object.entries(rest)) {
    if (Array.isArray(v) && v.some((x) => x && typeof x === 'object')) nested.push([k, v]);
    else facts.push(h`<span class="fact"><span class="muted">${k}</span> <code>${short(v)}</code></span>`);
  }
  const ok = rest.matched === true || rest.passed === true || rest.holds === true;
  const bad = rest.matched === false || rest.passed === false || rest.holds === false;
  return h`<strong class="${ok ? 'ok' : bad ? 'bad' : ''}">${step || ''}</strong> ${facts}${nested.map(([k, list]) => h`<div class="muted small">${k}</div><ul>${list.map((x) => h`<li>${stepHtml(x)}</li>`)}</ul>`)}`;
}

function auditTable(entries, showSubject = true) {
  if (!entries.length) return h`<p class="muted">No entries.</p>`;
  return h`<ol class="audit">${entries.map((e) => h`<li class="card"><div class="row"><strong>${e.action}</strong>
      ${showSubject ? h`<span>${e.subjectKind} ${e.subjectKind === 'flag' ? h`<a href="/ui/flags/${enc(e.subject)}">${e.subject}</a>` : h`<code>${e.subject}</code>`}</span>` : ''}
      ${e.environment ? h`<span class="badge">${e.environment}</span>` : ''}<span class="grow"></span><span class="small">${e.actorName || e.actor}</span> <span class="small muted">${when(e.at)}</span></div>
      ${e.reason ? h`<p class="reason">“${e.reason}”</p>` : ''}
      <details><summary>What changed</summary>${changesTable(diffValues(e.before, e.after))}</details></li>`)}</ol>`;
}

/// Field-by-field difference of two JSON values (the audit log's before and after).
function diffValues(before, after, path = '', out = []) {
  const isObj = (v) => v && typeof v === 'object' && !Array.isArray(v);
  if (isObj(before) && isObj(after)) {
    for (const k of [...new Set([...Object.keys(before), ...Object.keys(after)])].sort()) diffValues(before[k], after[k], path ? `${path}.${k}` : k, out);
  } else if (json(before) !== json(after)) {
    out.push({ path: path || '(whole)', before: before === null ? undefined : before, after: after === null ? undefined : after });
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// Segments

route(/^\/ui\/segments$/, async () => {
  async function draw() {
    const segs = (await get('/api/v1/segments')).segments;
    pageShell('Segments', '', h`<p class="muted">Reusable audiences; rules refer to them with <code>in_segment</code>.</p>
      <table><thead><tr><th>Segment</th><th>Attribute</th><th>Included</th><th>Excluded</th><th>Conditions</th><th>Updated</th></tr></thead><tbody>
      ${segs.map((s) => h`<tr><td><a href="/ui/segments/${enc(s.name)}"><strong>${s.name}</strong></a>${s.definition.name ? h`<div class="muted small">${s.definition.name}</div>` : ''}</td><td><code>${s.definition.attribute || 'targetingKey'}</code></td><td>${(s.definition.included || []).length}</td><td>${(s.definition.excluded || []).length}</td><td>${(s.definition.conditions || []).length}</td><td class="small">${when(s.updatedAt)}</td></tr>`)}</tbody></table>`);
  }
  await draw();
  return { refresh: draw };
});

route(/^\/ui\/segments\/(.+)$/, async (name) => {
  const state = { dirty: false };
  async function draw() {
    const s = (await api('GET', `/api/v1/segments/${enc(name)}`)).data;
    pageShell(h`<span class="muted">Segment</span> ${name}`, h`<span class="badge">version ${s.version}</span>`, h`
      <form class="card stack" id="seg-form"><p class="muted small">The segment's definition (JSON): <code>attribute</code>, <code>included</code>, <code>excluded</code>, <code>conditions</code>.</p>
      <textarea name="text" rows="14" class="code" spellcheck="false" aria-label="Segment definition"${disabledIfViewer()}>${JSON.stringify(s.definition, null, 2)}</textarea>
      <div class="row end"><button type="submit" class="primary"${disabledIfViewer()}>Review and save</button></div></form>
      <h2>History</h2><div id="seg-audit"></div>`);
    const form = document.getElementById('seg-form');
    form.addEventListener('input', () => { state.dirty = true; });
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      let next; try { next = JSON.parse(form.text.value); } catch (err) { showError(new Error(`not valid JSON: ${err.message}`)); return; }
      confirmChange({ title: `Save segment ${name}?`, preview: async () => diffValues(s.definition, next), apply: (reason) => api('PUT', `/api/v1/segments/${enc(name)}`, { definition: next, reason }, { version: s.version }) })
        .then((ok) => { if (ok) { state.dirty = false; draw(); } });
    });
    document.getElementById('seg-audit').innerHTML = piece(auditTable((await get(`/api/v1/audit?segment=${enc(name)}&limit=50`)).entries, false));
  }
  await draw();
  return { refresh: draw, dirty: () => state.dirty };
});

// ---------------------------------------------------------------------------------------
// Experiments

const pct = (x, d = 1) => (x === null || x === undefined ? '—' : `${(x * 100).toFixed(d)} %`);
const num = (x, d = 3) => (x === null || x === undefined ? '—' : Number(x).toFixed(d));

route(/^\/ui\/experiments$/, async () => {
  async function draw() {
    const list = (await get('/api/v1/experiments')).experiments;
    const flags = (await get('/api/v1/flags')).flags.filter((f) => !f.archived);
    const envs = (await environments()).map((e) => e.name);
    pageShell('Experiments', '', h`<table><thead><tr><th>Experiment</th><th>Flag</th><th>Environment</th><th>Status</th><th>Variants</th><th>Started</th></tr></thead><tbody>
      ${list.map((x) => h`<tr><td><a href="/ui/experiments/${enc(x.id)}"><strong>${x.id}</strong></a>${x.name ? h`<div class="muted small">${x.name}</div>` : ''}</td><td><a href="/ui/flags/${enc(x.flag)}">${x.flag}</a></td><td>${x.environment}</td><td><span class="badge status-${x.status}">${x.status}</span></td><td>${Object.entries(x.variants).map(([v, w]) => h`<code>${v}</code> ${w} % `)}</td><td class="small">${when(x.startedAt)}</td></tr>`)}</tbody></table>
      ${list.length ? '' : h`<p class="muted">No experiments yet.</p>`}
      ${CAN_EDIT ? h`<form class="card stack" id="exp-new"><h2>New experiment from a flag</h2>
        <div class="grid2"><label>Id<input name="id" required placeholder="checkout-q1"></label><label>Name<input name="name"></label>
        <label>Flag<select name="flag">${flags.map((f) => h`<option>${f.key}</option>`)}</select></label><label>Environment<select name="environment">${envs.map((e) => h`<option${e === 'production' ? raw(' selected') : ''}>${e}</option>`)}</select></label></div>
        <label>Hypothesis<input name="hypothesis" placeholder="the new checkout lifts conversion"></label>
        <div class="grid2"><label>Control variant<input name="control" placeholder="first variant of the flag"></label><label>Split (variant: weight, comma-separated; blank: equal)<input name="variants" placeholder="off: 50, on: 50"></label>
        <label>Primary metric: event (conversion)<input name="event" required placeholder="checkout"></label><label>Guardrail metric: event (optional; higher is worse)<input name="guardrail" placeholder="checkout-error"></label>
        <label>Planned units<input type="number" name="plannedUnits" min="1"></label></div>
        <div class="row end"><button class="primary" type="submit">Create draft</button></div></form>` : ''}`);
    const form = document.getElementById('exp-new');
    if (form) form.addEventListener('submit', async (e) => {
      e.preventDefault();
      const f = new FormData(form);
      const flag = flags.find((x) => x.key === f.get('flag'));
      const keys = variantKeys(flag.definition);
      let variants = {};
      if (f.get('variants').trim()) {
        for (const part of f.get('variants').split(',')) { const [k, w] = part.split(':').map((s) => s.trim()); variants[k] = Number(w); }
      } else { const w = Math.floor(100000 / keys.length) / 1000; keys.forEach((k, i) => { variants[k] = i === 0 ? Math.round((100 - w * (keys.length - 1)) * 1000) / 1000 : w; }); }
      const spec = { id: f.get('id').trim(), flag: flag.key, environment: f.get('environment'), control: f.get('control').trim() || keys[0], variants, metrics: [{ event: f.get('event').trim(), kind: 'conversion', role: 'primary' }] };
      if (f.get('guardrail').trim()) spec.metrics.push({ event: f.get('guardrail').trim(), kind: 'conversion', role: 'guardrail', higherIsBetter: false });
      for (const k of ['name', 'hypothesis']) if (f.get(k).trim()) spec[k] = f.get(k).trim();
      if (f.get('plannedUnits')) spec.plannedUnits = Number(f.get('plannedUnits'));
      try { await api('POST', '/api/v1/experiments', spec); toast(`Created ${spec.id} (a draft).`); go(`/ui/experiments/${enc(spec.id)}`); } catch (err) { showError(err); }
    });
  }
  await draw();
  return { refresh: draw, dirty: () => !!document.querySelector('#exp-new input:focus') };
});

route(/^\/ui\/experiments\/([^/]+)$/, async (id) => {
  async function draw() {
    const x = (await get(`/api/v1/experiments/${enc(id)}`));
    let results = null; let resultsError = null;
    if (x.status !== 'draft') { try { results = await get(`/api/v1/experiments/${enc(id)}/results`); } catch (err) { resultsError = err; } }
    const actions = { draft: ['start', 'cancel'], running: ['pause', 'complete', 'cancel'], paused: ['resume', 'complete', 'cancel'] }[x.status] || [];
    pageShell(h`<span class="muted">Experiment</span> ${id}`, h`<span class="badge status-${x.status}">${x.status}</span> ${CAN_EDIT ? actions.map((a) => h`<button type="button" data-act="${a}"${a === 'cancel' ? raw(' class="danger"') : ''}>${a[0].toUpperCase() + a.slice(1)}</button> `) : ''}`, h`
      <p class="lead">${x.hypothesis || ''}</p>
      <dl class="facts"><dt>Flag</dt><dd><a href="/ui/flags/${enc(x.flag)}">${x.flag}</a> in ${x.environment}</dd><dt>Control</dt><dd><code>${x.control}</code></dd>
      <dt>Split</dt><dd>${Object.entries(x.variants).map(([v, w]) => h`<code>${v}</code> ${w} % `)}</dd><dt>Metrics</dt><dd>${x.metrics.map((m) => h`<span class="tag">${m.role}: ${m.name || m.event} (${m.kind})</span> `)}</dd>
      ${x.shippedVariant ? h`<dt>Shipped</dt><dd><code>${x.shippedVariant}</code></dd>` : ''}</dl>
      ${resultsError ? errorHtml(resultsError) : ''}${results ? resultsHtml(results) : h`<p class="muted">Results appear once it has started.</p>`}
      <h2>Timeline</h2><ol class="timeline">${x.timeline.map((t) => h`<li><span class="badge status-${t.status}">${t.status}</span> ${when(t.at)} by ${t.actorName || t.actor}${t.reason ? h` — “${t.reason}”` : ''}</li>`)}</ol>`);
    for (const b of main.querySelectorAll('[data-act]')) b.addEventListener('click', async () => {
      const a = b.dataset.act;
      const body = a === 'complete' ? h`<label>Ship a variant (it becomes the environment's fallthrough; blank: none)<select name="ship"><option value=""></option>${Object.keys(x.variants).map((v) => h`<option>${v}</option>`)}</select></label>` : h`<p>${{ start: 'Units start being assigned and exposures recorded.', pause: 'The units it would assign get the control; nothing is recorded.', resume: 'The same units get the same variants again.', cancel: 'It stops; nothing is shipped.' }[a]}</p>`;
      const answer = await dialog({ title: `${a[0].toUpperCase() + a.slice(1)} ${id}?`, body, submit: a, danger: a === 'cancel' });
      if (!answer) return;
      const req = { reason: answer.reason || undefined }; if (answer.ship) req.ship = answer.ship;
      try { await api('POST', `/api/v1/experiments/${enc(id)}/${a}`, req); toast(`${id}: ${a} done.`); draw(); } catch (err) { showError(err); }
    });
  }
  await draw();
  return { refresh: draw };
});

function resultsHtml(r) {
  const srm = r.srm ? h`<span class="badge ${r.srm.status === 'ok' ? 'ok' : 'warn'}" data-testid="srm">SRM ${r.srm.status} (p = ${num(r.srm.pValue, 4)})</span>` : '';
  return h`<section class="card results"><div class="row"><h2>Results</h2><span class="grow"></span>${srm}<span class="muted small">${r.days.toFixed(1)} days, computed ${when(r.computedAt)}</span></div>
    <p class="recommendation"><strong>${r.recommendation.action}</strong>: ${r.recommendation.message}</p>
    ${r.warnings.length ? h`<ul class="warnings">${r.warnings.map((w) => h`<li class="notice">${w.message}</li>`)}</ul>` : ''}
    <table><thead><tr><th>Variant</th><th>Weight</th><th class="num">Units</th></tr></thead><tbody>${r.variants.map((v) => h`<tr><td><code>${v.variant}</code>${v.control ? ' (control)' : ''}</td><td>${v.weight} %</td><td class="num">${v.units}</td></tr>`)}</tbody></table>
    ${r.metrics.map((m) => h`<h3>${m.name} <span class="badge">${m.role}</span> <span class="muted small">${m.kind}, ${m.higherIsBetter ? 'higher is better' : 'lower is better'}</span></h3>
      ${cupedNote(m)}
      ${liftChart(m)}
      <div class="scroll"><table class="num-table"><thead><tr><th>Variant</th><th>Units</th><th>${m.kind === 'conversion' ? 'Rate' : 'Mean'}</th><th>Lift (abs)</th><th>95 % CI</th><th>Rel. lift</th><th>p</th><th>p (adj.)</th><th>p (sequential)</th><th>Chance to beat control</th><th>Expected loss</th><th>Verdict</th></tr></thead>
      <tbody>${m.arms.map((a) => { const c = a.vsControl || {}; return h`<tr><td><code>${a.variant}</code>${a.control ? ' (control)' : ''}</td><td>${a.units}</td><td>${m.kind === 'conversion' ? pct(a.mean, 2) : num(a.mean)}</td>
        <td>${c.absLift === undefined ? '—' : m.kind === 'conversion' ? pct(c.absLift, 2) : num(c.absLift)}</td><td>${c.ciAbs ? (m.kind === 'conversion' ? `${pct(c.ciAbs[0], 2)} … ${pct(c.ciAbs[1], 2)}` : `${num(c.ciAbs[0])} … ${num(c.ciAbs[1])}`) : '—'}</td>
        <td>${c.relLift === undefined ? '—' : pct(c.relLift)}</td><td>${num(c.pValue, 4)}</td><td>${num(c.pValueAdjusted, 4)}</td><td>${num(c.sequentialPValue, 4)}</td><td>${pct(c.chanceToBeatControl)}</td><td>${num(c.expectedLoss, 5)}</td><td>${c.verdict || ''}</td></tr>`; })}</tbody></table></div>`)}
    ${seriesChart(r.series)}</section>`;
}

/// What CUPED did to a metric's comparisons, when the metric asks for it.
function cupedNote(m) {
  const c = m.cuped;
  if (!c) return '';
  if (!c.applied) return h`<p class="muted small" data-testid="cuped">CUPED (${c.prePeriodDays} days before exposure): ${c.note || 'not applied'}</p>`;
  const cut = c.varianceReduction === null || c.varianceReduction === undefined ? '' : `, variance ${pct(-c.varianceReduction)}`;
  return h`<p class="muted small" data-testid="cuped">CUPED-adjusted over ${c.prePeriodDays} days before exposure (θ = ${num(c.theta, 4)}${cut}): lifts, intervals and tests use the adjusted means; the rate or mean shown is what units did.</p>`;
}

/// Absolute lift of each treatment with its 95 % interval, around zero (SVG, no script).
function liftChart(m) {
  const arms = m.arms.filter((a) => !a.control && a.vsControl && a.vsControl.ciAbs);
  if (!arms.length) return '';
  const lo = Math.min(0, ...arms.map((a) => a.vsControl.ciAbs[0])); const hi = Math.max(0, ...arms.map((a) => a.vsControl.ciAbs[1]));
  const span = hi - lo || 1; const W = 600; const rowH = 28; const pad = 110;
  const x = (v) => pad + ((v - lo) / span) * (W - pad - 80);
  const fmt = (v) => (m.kind === 'conversion' ? pct(v, 2) : num(v));
  return h`<figure class="chart"><svg viewBox="0 0 ${W} ${arms.length * rowH + 24}" role="img" aria-label="Lift of each variant against the control, with its 95 % confidence interval">
    <line x1="${x(0)}" x2="${x(0)}" y1="0" y2="${arms.length * rowH}" class="zero"></line>
    ${arms.map((a, i) => { const [l, u] = a.vsControl.ciAbs; const y = i * rowH + 14; const good = m.higherIsBetter ? l > 0 : u < 0; const bad = m.higherIsBetter ? u < 0 : l > 0; return h`<text x="4" y="${y + 4}" class="label">${a.variant}</text><line x1="${x(l)}" x2="${x(u)}" y1="${y}" y2="${y}" class="ci ${good ? 'good' : bad ? 'bad' : ''}"></line><circle cx="${x(a.vsControl.absLift)}" cy="${y}" r="4" class="point"></circle><text x="${x(u) + 4}" y="${y + 4}" class="small">${fmt(a.vsControl.absLift)}</text>`; })}
    <text x="${x(lo)}" y="${arms.length * rowH + 18}" class="small">${fmt(lo)}</text><text x="${x(hi) - 40}" y="${arms.length * rowH + 18}" class="small">${fmt(hi)}</text></svg>
    <figcaption class="muted small">Lift against the control with its 95 % interval; the line is no difference.</figcaption></figure>`;
}

/// Cumulative units per variant by day (SVG polyline per variant).
function seriesChart(series) {
  if (!series || series.length < 2) return '';
  const variants = [...new Set(series.flatMap((p) => p.arms.map((a) => a.variant)))];
  const max = Math.max(1, ...series.flatMap((p) => p.arms.map((a) => a.units)));
  const W = 600; const H = 160; const x = (i) => 40 + (i / (series.length - 1)) * (W - 60); const y = (u) => H - 20 - (u / max) * (H - 40);
  return h`<figure class="chart"><svg viewBox="0 0 ${W} ${H}" role="img" aria-label="Units exposed over time, per variant">
    ${variants.map((v, vi) => h`<polyline class="series s${vi % 6}" points="${series.map((p, i) => { const a = p.arms.find((z) => z.variant === v); return `${x(i)},${y(a ? a.units : 0)}`; }).join(' ')}"></polyline><text x="${W - 56}" y="${14 + vi * 14}" class="small s${vi % 6}">${v}</text>`)}
    <text x="40" y="${H - 4}" class="small">${series[0].date}</text><text x="${W - 100}" y="${H - 4}" class="small">${series[series.length - 1].date}</text><text x="2" y="14" class="small">${max}</text></svg>
    <figcaption class="muted small">Cumulative units exposed, by day.</figcaption></figure>`;
}

// ---------------------------------------------------------------------------------------
// Progressive rollouts and guards

route(/^\/ui\/rollouts$/, async () => {
  async function draw() {
    const [ro, gu, fl, envs] = await Promise.all([get('/api/v1/rollouts'), get('/api/v1/guards'), get('/api/v1/flags'), environments()]);
    const flagOpts = fl.flags.filter((f) => !f.archived).map((f) => h`<option>${f.key}</option>`);
    const envOpts = envs.map((e) => h`<option${e.name === 'production' ? raw(' selected') : ''}>${e.name}</option>`);
    pageShell('Progressive rollouts', '', h`<p class="muted">A rollout raises a flag's share stage by stage while its gates stay green, and rolls back by itself when one turns red (docs/rollouts.md; gates on Prometheus or health checks: <code>switchyard rollouts start --file</code>).</p>
      <table><thead><tr><th>Rollout</th><th>Flag</th><th>Environment</th><th>Status</th><th>Stage</th><th>Gates</th></tr></thead><tbody>
      ${ro.rollouts.map((r) => h`<tr><td><a href="/ui/rollouts/${enc(r.id)}"><code>${r.id}</code></a></td><td><a href="/ui/flags/${enc(r.flag)}">${r.flag}</a></td><td>${r.environment}</td><td><span class="badge status-${r.status}">${r.status}</span></td><td>${r.stage + 1} of ${r.stages.length}: ${r.percentage} %</td><td>${r.readings.map((g) => h`<span class="badge ${g.status === 'green' ? 'ok' : g.status === 'red' ? 'bad' : ''}">${g.kind} ${g.status}</span> `)}</td></tr>`)}</tbody></table>
      ${ro.rollouts.length ? '' : h`<p class="muted">No progressive rollouts.</p>`}
      <h2>Guards</h2><p class="muted small">Automatic kill switches: the flag is killed when the error rate or query is above its limit.</p>
      <table><thead><tr><th>Guard</th><th>Flag</th><th>Environment</th><th>State</th><th>Trips</th><th>Last reading</th><th></th></tr></thead><tbody>
      ${gu.guards.map((g) => h`<tr><td><code>${g.id}</code></td><td><a href="/ui/flags/${enc(g.flag)}">${g.flag}</a></td><td>${g.environment}</td><td><span class="badge">${g.state}</span></td><td>${g.trips}${g.lastTrippedAt ? h` (last ${when(g.lastTrippedAt)})` : ''}</td><td>${g.reading ? h`${g.reading.status} ${g.reading.value ?? ''}` : '—'}</td><td>${CAN_EDIT ? h`<button type="button" class="link" data-del-guard="${g.id}">remove</button>` : ''}</td></tr>`)}</tbody></table>
      ${CAN_EDIT ? h`<div class="grid2"><form class="card stack" id="rollout-new"><h2>Start a rollout</h2>
        <div class="grid2"><label>Flag<select name="flag">${flagOpts}</select></label><label>Environment<select name="environment">${envOpts}</select></label></div>
        <label>Stages (percentages)<input name="stages" value="5, 25, 50, 100" required></label>
        <div class="grid2"><label>Hold each stage at least<input name="hold" value="10m" placeholder="90s, 10m, 1h"></label><label>Wait for approval at (%, optional)<input name="approvalAt" type="number" min="0" max="100" step="0.001"></label>
        <label>Error event (optional)<input name="errorEvent" placeholder="checkout-error"></label><label>at most this error rate<input name="maxErrorRate" type="number" min="0" max="1" step="0.0001" placeholder="0.01"></label></div>
        <label>On a red gate<select name="onRed"><option value="zero">back to 0 %</option><option value="last_healthy">back to the last healthy stage</option></select></label>
        <div class="row end"><button type="submit" class="primary">Start rollout</button></div></form>
        <form class="card stack" id="guard-new"><h2>Set up a guard</h2>
        <div class="grid2"><label>Flag<select name="flag">${flagOpts}</select></label><label>Environment<select name="environment">${envOpts}</select></label>
        <label>Error event<input name="errors" required placeholder="checkout-error"></label><label>Request event<input name="requests" required placeholder="checkout"></label>
        <label>Kill above this error rate<input name="max" type="number" min="0" max="1" step="0.0001" required placeholder="0.05"></label><label>Window<input name="window" value="10m"></label></div>
        <div class="row end"><button type="submit" class="primary">Create guard</button></div></form></div>` : ''}`);
    const rf = document.getElementById('rollout-new');
    if (rf) rf.addEventListener('submit', async (e) => {
      e.preventDefault();
      const f = new FormData(rf);
      const approvalAt = f.get('approvalAt') === '' ? null : Number(f.get('approvalAt'));
      const stages = f.get('stages').split(',').map((x) => x.trim()).filter(Boolean).map((x) => ({ percentage: Number(x), ...(approvalAt !== null && Number(x) === approvalAt ? { approval: true } : {}) }));
      const plan = { flag: f.get('flag'), environment: f.get('environment'), stages, onRed: f.get('onRed') };
      if (f.get('hold').trim()) plan.hold = f.get('hold').trim();
      if (f.get('errorEvent').trim()) plan.gates = [{ kind: 'error_rate', event: f.get('errorEvent').trim(), max: Number(f.get('maxErrorRate') || 0.01) }];
      try { const r = (await api('POST', '/api/v1/rollouts', plan)).data; toast(`Rollout ${r.id} started at ${r.percentage} %.`); go(`/ui/rollouts/${enc(r.id)}`); } catch (err) { showError(err); }
    });
    const gf = document.getElementById('guard-new');
    if (gf) gf.addEventListener('submit', async (e) => {
      e.preventDefault();
      const f = new FormData(gf);
      const spec = { flag: f.get('flag'), environment: f.get('environment'), metric: { kind: 'error_rate', errors: f.get('errors').trim(), requests: f.get('requests').trim() }, max: Number(f.get('max')) };
      if (f.get('window').trim()) spec.window = f.get('window').trim();
      try { const g = (await api('POST', '/api/v1/guards', spec)).data; toast(`Guard ${g.id} watches ${g.flag}.`); draw(); } catch (err) { showError(err); }
    });
    for (const b of main.querySelectorAll('[data-del-guard]')) b.addEventListener('click', async () => {
      const a = await dialog({ title: `Remove guard ${b.dataset.delGuard}?`, body: h`<p>The flag stays as it is.</p>`, submit: 'Remove', danger: true });
      if (!a) return;
      try { await api('DELETE', `/api/v1/guards/${enc(b.dataset.delGuard)}`, { reason: a.reason || undefined }); toast('Removed.'); draw(); } catch (err) { showError(err); }
    });
  }
  await draw();
  return { refresh: draw, dirty: () => !!document.querySelector('#rollout-new :focus, #guard-new :focus') };
});

route(/^\/ui\/rollouts\/([^/]+)$/, async (id) => {
  async function draw() {
    const r = await get(`/api/v1/rollouts/${enc(id)}`);
    const live = ['running', 'paused', 'awaiting_approval'].includes(r.status);
    const acts = !CAN_EDIT || !live ? [] : r.status === 'paused' ? ['resume', 'abort'] : r.status === 'awaiting_approval' ? ['advance', 'abort'] : ['pause', 'advance', 'abort'];
    pageShell(h`<span class="muted">Rollout</span> ${id}`, h`<span class="badge status-${r.status}">${r.status}</span> ${acts.map((a) => h`<button type="button" data-act="${a}"${a === 'abort' ? raw(' class="danger"') : ''}>${a === 'advance' && r.status === 'awaiting_approval' ? 'Approve and advance' : a[0].toUpperCase() + a.slice(1)}</button> `)}`, h`
      <dl class="facts"><dt>Flag</dt><dd><a href="/ui/flags/${enc(r.flag)}">${r.flag}</a> in ${r.environment}, variant <code>${r.variant}</code></dd><dt>Now</dt><dd>stage ${r.stage + 1} of ${r.stages.length}: <strong>${r.percentage} %</strong>, held until ${when(r.holdUntil)}</dd><dt>On red</dt><dd>${r.onRed === 'last_healthy' ? 'back to the last healthy stage' : 'back to 0 %'}</dd><dt>Set up by</dt><dd>${r.createdBy}</dd></dl>
      <ol class="stages">${r.stages.map((s, i) => h`<li class="${i < r.stage ? 'done' : i === r.stage ? 'current' : ''}">${s.percentage} %${s.approval ? ' (approval)' : ''}</li>`)}</ol>
      <h2>Gates</h2>${r.gates.length ? h`<table><thead><tr><th>Gate</th><th>Status</th><th>Value</th><th>Baseline</th><th>Sample</th></tr></thead><tbody>${r.readings.map((g) => h`<tr><td>${g.kind}</td><td><span class="badge ${g.status === 'green' ? 'ok' : g.status === 'red' ? 'bad' : ''}">${g.status}</span></td><td>${g.value ?? '—'}</td><td>${g.baseline ?? '—'}</td><td>${g.sample ?? '—'}</td></tr>`)}</tbody></table>
      <p class="muted small">${r.readingsAt ? h`Read ${when(r.readingsAt)}.` : 'Not read yet.'}</p>` : h`<p class="muted">No gates: the stages advance on time alone (and on approval where a stage asks for it).</p>`}
      <h2>Stage history</h2><ol class="timeline">${r.history.map((e) => h`<li><strong>${e.action}</strong> → ${e.percentage} % ${when(e.at)} by ${e.actor}${e.note ? h` — ${e.note}` : ''}</li>`)}</ol>`);
    for (const b of main.querySelectorAll('[data-act]')) b.addEventListener('click', async () => {
      const a = await dialog({ title: `${b.textContent} ${id}?`, body: '', submit: b.textContent, danger: b.dataset.act === 'abort' });
      if (!a) return;
      try { await api('POST', `/api/v1/rollouts/${enc(id)}/${b.dataset.act}`, { reason: a.reason || undefined }); toast('Done.'); draw(); } catch (err) { showError(err); }
    });
  }
  await draw();
  return { refresh: draw };
});

// ---------------------------------------------------------------------------------------
// Schedules

route(/^\/ui\/schedules$/, async () => {
  async function draw() {
    const [list, flags, envs] = await Promise.all([get('/api/v1/schedules'), get('/api/v1/flags'), environments()]);
    pageShell('Scheduled changes', '', h`<table><thead><tr><th>When</th><th>Flag</th><th>Environment</th><th>Change</th><th>State</th><th>By</th><th></th></tr></thead><tbody>
      ${list.schedules.map((s) => h`<tr><td>${when(s.at)}</td><td><a href="/ui/flags/${enc(s.flag)}">${s.flag}</a></td><td>${s.environment}</td><td><code>${short(s.action)}</code></td><td><span class="badge">${s.state}</span></td><td class="small">${s.createdBy}</td><td>${CAN_EDIT && s.state === 'pending' ? h`<button type="button" class="link" data-cancel-schedule="${s.id}">cancel</button>` : ''}</td></tr>`)}</tbody></table>
      ${list.schedules.length ? '' : h`<p class="muted">Nothing scheduled.</p>`}
      ${CAN_EDIT ? h`<form class="card stack" id="sched-new"><h2>Schedule a change</h2><div class="grid2">
        <label>Flag<select name="flag">${flags.flags.map((f) => h`<option>${f.key}</option>`)}</select></label><label>Environment<select name="environment">${envs.map((e) => h`<option>${e.name}</option>`)}</select></label>
        <label>Change<select name="op"><option value="enable">enable</option><option value="disable">disable</option><option value="kill">kill</option><option value="release">release kill switch</option><option value="rollout">rollout to</option><option value="archive">archive</option></select></label>
        <label>Rollout percentage (for “rollout to”)<input type="number" name="percentage" min="0" max="100" step="0.001"></label>
        <label>At (your local time)<input type="datetime-local" name="at" required></label></div><div class="row end"><button type="submit" class="primary">Schedule</button></div></form>` : ''}`);
    for (const b of main.querySelectorAll('[data-cancel-schedule]')) b.addEventListener('click', async () => {
      try { await api('DELETE', `/api/v1/schedules/${enc(b.dataset.cancelSchedule)}`, {}); toast('Cancelled.'); draw(); } catch (err) { showError(err); }
    });
    const form = document.getElementById('sched-new');
    if (form) form.addEventListener('submit', async (e) => {
      e.preventDefault();
      const f = new FormData(form); const op = f.get('op');
      const action = op === 'rollout' ? { op, percentage: Number(f.get('percentage')) } : { op };
      const body = { flag: f.get('flag'), environment: f.get('environment'), at: new Date(f.get('at')).toISOString(), action };
      try { await api('POST', '/api/v1/schedules', body); toast('Scheduled.'); draw(); } catch (err) { showError(err); }
    });
  }
  await draw();
  return { refresh: draw, dirty: () => !!document.querySelector('#sched-new :focus') };
});

// ---------------------------------------------------------------------------------------
// Approvals

route(/^\/ui\/requests$/, async () => {
  async function draw() {
    const list = (await get('/api/v1/requests')).requests;
    pageShell('Change requests', '', h`<p class="muted">In environments that require approval, a person's flag change waits here for someone else.</p>
      ${list.length ? '' : h`<p class="muted">No change requests.</p>`}
      ${list.map((r) => h`<div class="card"><div class="row"><strong>${r.action}</strong> <a href="/ui/flags/${enc(r.flag)}">${r.flag}</a> <span class="badge">${r.environments.join(', ')}</span> <span class="badge status-${r.status}">${r.status}</span><span class="grow"></span><span class="small">${r.authorName || r.author} ${when(r.createdAt)}</span></div>
        ${r.reason ? h`<p class="reason">“${r.reason}”</p>` : ''}${changesTable(diffValues(r.before, r.after))}
        ${CAN_EDIT && r.status === 'pending' ? h`<div class="row end"><button type="button" data-reject="${r.id}">Reject</button><button type="button" class="primary" data-approve="${r.id}">Approve and apply</button></div>` : ''}</div>`)}`);
    for (const [attr, verb] of [['approve', 'Approve'], ['reject', 'Reject']]) {
      for (const b of main.querySelectorAll(`[data-${attr}]`)) b.addEventListener('click', async () => {
        const a = await dialog({ title: `${verb} this change?`, body: '', submit: verb, danger: attr === 'reject' });
        if (!a) return;
        try { await api('POST', `/api/v1/requests/${enc(b.dataset[attr])}/${attr}`, { reason: a.reason || undefined }); toast(`${verb}d.`); draw(); } catch (err) { showError(err); }
      });
    }
  }
  await draw();
  return { refresh: draw };
});

// ---------------------------------------------------------------------------------------
// The audit log

route(/^\/ui\/audit$/, async () => {
  const p = new URLSearchParams(location.search);
  async function draw() {
    const q = new URLSearchParams();
    for (const k of ['flag', 'segment', 'actor', 'since', 'until']) if (p.get(k)) q.set(k, p.get(k));
    q.set('limit', '200');
    let entries = []; let error = null;
    try { entries = (await get(`/api/v1/audit?${q}`)).entries; } catch (err) { error = err; }
    const action = p.get('action') || '';
    const shown = action ? entries.filter((e) => e.action.startsWith(action)) : entries;
    pageShell('Audit log', '', h`<form class="filters" id="audit-filters">
      <label>Flag<input name="flag" value="${p.get('flag') || ''}"></label><label>Segment<input name="segment" value="${p.get('segment') || ''}"></label>
      <label>Actor (id)<input name="actor" value="${p.get('actor') || ''}" placeholder="token:…"></label><label>Action<input name="action" value="${action}" placeholder="flag.kill"></label>
      <label>Since<input type="date" name="since" value="${(p.get('since') || '').slice(0, 10)}"></label><button type="submit">Filter</button></form>
      ${error ? errorHtml(error) : ''}<p class="muted small">${shown.length} entries, newest first.</p>${auditTable(shown)}`);
    document.getElementById('audit-filters').addEventListener('submit', (e) => {
      e.preventDefault();
      const f = new FormData(e.target); const next = new URLSearchParams();
      for (const [k, v] of f) if (v) next.set(k, k === 'since' ? `${v}T00:00:00Z` : v);
      go(`/ui/audit${next.toString() ? `?${next}` : ''}`);
    });
  }
  await draw();
  return { refresh: draw };
});

// ---------------------------------------------------------------------------------------
// Reports: stale flags, last evaluated

route(/^\/ui\/reports$/, async () => {
  async function draw() {
    const [stale, evals] = await Promise.all([get('/api/v1/reports/stale-flags'), get('/api/v1/reports/evaluations')]);
    pageShell('Reports', '', h`<h2>Stale flags</h2><p class="muted small">Serving one variant everywhere for ${stale.days} days, past their expected removal, or archived but still required.</p>
      <table><thead><tr><th>Flag</th><th>Owner</th><th>Age</th><th>Why</th></tr></thead><tbody>${stale.flags.map((f) => h`<tr><td><a href="/ui/flags/${enc(f.key)}">${f.key}</a></td><td>${f.owner || ''}</td><td>${f.ageDays} days</td><td>${f.reasons.join('; ')}</td></tr>`)}</tbody></table>
      ${stale.flags.length ? '' : h`<p class="muted">No stale flags.</p>`}
      <h2>Last evaluated</h2><p class="muted small">${evals.recordedSince ? h`Recorded since ${when(evals.recordedSince)}, to within a minute.` : 'Not recorded yet.'}</p>
      <table><thead><tr><th>Flag</th><th>Environment</th><th>Last evaluated</th></tr></thead><tbody>${evals.evaluations.map((e) => h`<tr><td><a href="/ui/flags/${enc(e.flag)}">${e.flag}</a></td><td>${e.environment}</td><td>${when(e.lastEvaluatedAt)}</td></tr>`)}</tbody></table>`);
  }
  await draw();
  return { refresh: draw };
});

// ---------------------------------------------------------------------------------------
// Settings: environments, tokens, webhooks (admins change them)

route(/^\/ui\/settings$/, async () => {
  // A secret just created is shown once: kept here so a live redraw does not lose it.
  const shown = { token: null, hook: null };
  const secretBox = (label, value) => (value ? h`<div class="notice"><p>${label}, shown this once:</p><input readonly value="${value}" aria-label="${label}" class="code" id="secret-value"></div>` : '');
  async function draw() {
    const envs = await environments(true);
    const [tokens, hooks] = IS_ADMIN ? await Promise.all([get('/api/v1/tokens'), get('/api/v1/webhooks')]) : [null, null];
    pageShell('Settings', '', h`<h2>Environments</h2><table><thead><tr><th>Environment</th><th>Created</th><th>Changes by people</th></tr></thead><tbody>
      ${envs.map((e) => h`<tr><td>${e.name}</td><td class="small">${when(e.createdAt)}</td><td><label class="check"><input type="checkbox" data-approval="${e.name}"${e.requireApproval ? raw(' checked') : ''}${IS_ADMIN ? '' : raw(' disabled')}> need someone else's approval</label></td></tr>`)}</tbody></table>
      ${IS_ADMIN ? h`<h2>Tokens</h2><table><thead><tr><th>Name</th><th>Role</th><th>Environment</th><th>Created</th><th></th></tr></thead><tbody>${tokens.tokens.filter((t) => !t.revokedAt).map((t) => h`<tr><td>${t.name}</td><td><span class="badge role-${t.role}">${t.role}</span></td><td>${t.environment || ''}</td><td class="small">${when(t.createdAt)}</td><td><button type="button" class="link" data-revoke="${t.id}">revoke</button></td></tr>`)}</tbody></table>
        <form class="row" id="token-new"><input name="name" placeholder="token name" required aria-label="Token name"><select name="role" aria-label="Role"><option>viewer</option><option>editor</option><option>admin</option><option>sdk</option></select><select name="environment" aria-label="Environment (SDK keys)"><option value="">(any)</option>${envs.map((e) => h`<option>${e.name}</option>`)}</select><button type="submit">Create token</button></form><div id="new-secret">${secretBox("The token's secret", shown.token)}</div>
        <h2>Webhooks</h2><table><thead><tr><th>Id</th><th>URL</th><th>Events</th><th></th></tr></thead><tbody>${hooks.webhooks.map((w) => h`<tr><td><code>${w.id}</code></td><td>${w.url}</td><td>${(w.events || []).join(', ')}</td><td><button type="button" class="link" data-del-hook="${w.id}">delete</button></td></tr>`)}</tbody></table>
        <form class="row" id="hook-new"><input name="id" required placeholder="id (ops-slack)" aria-label="Webhook id" class="narrow"><input name="url" type="url" required placeholder="https://hooks.example/switchyard" aria-label="Webhook URL" class="grow"><select name="format" aria-label="Format"><option value="generic">signed JSON</option><option value="slack">Slack</option><option value="pagerduty">PagerDuty</option></select><input name="events" placeholder="events (blank: all), e.g. flag.killed" aria-label="Events"><input name="routingKey" placeholder="PagerDuty routing key" aria-label="PagerDuty routing key" class="narrow"><button type="submit">Create webhook</button></form><div id="new-hook-secret">${secretBox('The signing secret', shown.hook)}</div>
        <p class="muted small">Formats, events and the signature: docs/webhooks.md.</p>` : h`<p class="muted">Tokens and webhooks are for admins.</p>`}`);
    const hf = document.getElementById('hook-new');
    if (hf) hf.addEventListener('submit', async (e) => {
      e.preventDefault();
      const f = new FormData(hf);
      const spec = { id: f.get('id').trim(), url: f.get('url').trim(), format: f.get('format') };
      if (f.get('routingKey').trim()) spec.routingKey = f.get('routingKey').trim();
      const events = f.get('events').split(',').map((x) => x.trim()).filter(Boolean); if (events.length) spec.events = events;
      try {
        const w = (await api('POST', '/api/v1/webhooks', spec)).data;
        shown.token = null; shown.hook = w.secret || null;
        await draw();
      } catch (err) { showError(err); }
    });
    for (const box of main.querySelectorAll('[data-approval]')) box.addEventListener('change', async () => {
      const env = box.dataset.approval; const on = box.checked;
      const a = await dialog({ title: `${on ? 'Require' : 'Stop requiring'} approval in ${env}?`, body: changesTable([{ path: `environments.${env}.requireApproval`, before: !on, after: on }]), submit: 'Save' });
      if (!a) { box.checked = !on; return; }
      try { await api('PUT', `/api/v1/environments/${enc(env)}`, { requireApproval: on, reason: a.reason || undefined }); toast('Saved.'); envCache = null; } catch (err) { box.checked = !on; showError(err); }
    });
    for (const b of main.querySelectorAll('[data-del-hook]')) b.addEventListener('click', async () => {
      const a = await dialog({ title: `Delete webhook ${b.dataset.delHook}?`, body: h`<p>Its pending deliveries are not sent.</p>`, submit: 'Delete', danger: true });
      if (!a) return;
      try { await api('DELETE', `/api/v1/webhooks/${enc(b.dataset.delHook)}`, { reason: a.reason || undefined }); toast('Deleted.'); draw(); } catch (err) { showError(err); }
    });
    for (const b of main.querySelectorAll('[data-revoke]')) b.addEventListener('click', async () => {
      const a = await dialog({ title: 'Revoke this token?', body: h`<p>Everything using it (and every session opened with it) stops working at once.</p>`, submit: 'Revoke', danger: true });
      if (!a) return;
      try { await api('DELETE', `/api/v1/tokens/${enc(b.dataset.revoke)}`, { reason: a.reason || undefined }); toast('Revoked.'); draw(); } catch (err) { showError(err); }
    });
    const tf = document.getElementById('token-new');
    if (tf) tf.addEventListener('submit', async (e) => {
      e.preventDefault();
      const f = new FormData(tf); const body = { name: f.get('name'), role: f.get('role') }; if (f.get('environment')) body.environment = f.get('environment');
      try {
        const t = (await api('POST', '/api/v1/tokens', body)).data;
        shown.hook = null; shown.token = t.token;
        await draw();
      } catch (err) { showError(err); }
    });
  }
  await draw();
  return { refresh: draw, dirty: () => !!document.querySelector('#token-new :focus, #hook-new :focus') };
});

// ---------------------------------------------------------------------------------------

render();
startLive();
