// Herald admin console. Plain JavaScript, no build, no external code: every request goes to this origin's /v1 API
// with the key the operator signed in with, so the console can do nothing that key could not do with curl.
'use strict';

(function () {
  const KEY = 'herald.apiKey';
  const TENANT = 'herald.tenant';
  const POLL_MS = 2000;
  const COLORS = ['var(--c1)', 'var(--c2)', 'var(--c3)', 'var(--c4)', 'var(--c5)'];
  const STATES = ['queued', 'sending', 'retrying', 'sent', 'failed', 'expired', 'dead'];

  let session = null; // { key, admin }
  let timer = null;
  let ring = []; // dashboard samples, oldest first

  const $ = (id) => document.getElementById(id);

  /** Builds an element; strings become text nodes (never HTML). */
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
      else if (k === 'text') el.textContent = v;
      else el.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }

  const SVG = 'http://www.w3.org/2000/svg';
  function s(tag, attrs) {
    const el = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
    return el;
  }

  class ApiError extends Error {
    constructor(status, detail, problem) { super(detail); this.status = status; this.problem = problem; }
  }

  /** Calls the API; resolves to the parsed JSON (or null), rejects with ApiError carrying the problem's detail. */
  async function api(method, path, body) {
    const headers = { Authorization: 'Bearer ' + session.key, Accept: 'application/json' };
    const init = { method, headers, cache: 'no-store' };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    const response = await fetch(path, init);
    const type = response.headers.get('Content-Type') || '';
    const json = type.includes('json') ? await response.json().catch(() => null) : null;
    if (!response.ok) {
      const problem = type.includes('application/problem+json');
      const detail = (json && (json.detail || json.title)) || response.status + ' ' + response.statusText;
      if (response.status === 401) { signOut('Your key was not accepted (revoked or unknown). Sign in again.'); }
      throw new ApiError(response.status, detail, problem);
    }
    return json;
  }

  /** An endpoint this server does not have (another version, or a feature not enabled) answers a bare 404/405. */
  const notAvailable = (e) => e instanceof ApiError && (e.status === 405 || (e.status === 404 && !e.problem));

  function say(text) { $('status').textContent = text; }

  // ---- sign-in ---------------------------------------------------------------------------------------------------

  async function signIn(key) {
    session = { key, admin: false };
    try {
      await api('GET', '/v1/admin/dead?limit=1'); // any valid key may call it (a tenant sees its own)
    } catch (e) {
      session = null;
      throw e;
    }
    try {
      await api('GET', '/v1/admin/settings');
      session.admin = true;
    } catch (e) {
      if (!(e instanceof ApiError && e.status === 403)) throw e;
    }
    sessionStorage.setItem(KEY, key);
  }

  function signOut(message) {
    sessionStorage.removeItem(KEY);
    session = null;
    stopPolling();
    showSignIn(message || '');
  }

  function showSignIn(message) {
    $('nav').hidden = true;
    $('who').hidden = true;
    $('page').hidden = true;
    $('sign-in').hidden = false;
    $('sign-in-error').textContent = message;
    $('api-key').value = '';
    $('api-key').focus();
  }

  function showApp() {
    $('sign-in').hidden = true;
    $('nav').hidden = false;
    $('who').hidden = false;
    $('page').hidden = false;
    $('role').textContent = session.admin ? 'admin key' : 'tenant key';
    $('role').className = 'badge ' + (session.admin ? 'warn' : 'ok');
    route();
  }

  // ---- routing ---------------------------------------------------------------------------------------------------

  const pages = { dashboard, registrations, settings, dead, credentials, connectors, nodes };

  function route() {
    if (!session) return;
    stopPolling();
    const name = (location.hash.match(/^#\/(\w+)/) || [])[1];
    const page = pages[name] ? name : 'dashboard';
    for (const a of document.querySelectorAll('#nav a')) {
      if (a.dataset.page === page) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
    }
    const root = $('page');
    root.replaceChildren();
    root.dataset.page = page;
    pages[page](root);
    const title = root.querySelector('h1');
    if (title) { title.tabIndex = -1; title.focus({ preventScroll: true }); }
  }

  function stopPolling() {
    if (timer) { clearTimeout(timer); timer = null; }
  }

  function unavailable(root, text) {
    root.append(h('p', { class: 'unavailable', 'data-unavailable': 'true' }, text));
  }

  // ---- dashboard ---------------------------------------------------------------------------------------------------

  function dashboard(root) {
    root.append(h('h1', { text: 'Dashboard' }));
    if (!session.admin) {
      unavailable(root, 'The dashboard shows the whole node and needs the admin key. With a tenant key, use Registrations and Dead letters.');
      return;
    }
    const where = h('p', { class: 'hint', id: 'dash-where' });
    const tiles = h('dl', { class: 'tiles', id: 'tiles' });
    const charts = h('div', { class: 'charts' });
    const queue = h('div', { class: 'table-wrap', id: 'queue-table' });
    const failures = h('div', { class: 'table-wrap', id: 'failures-table' });
    root.append(where, tiles, h('h2', { text: 'Last hour' }), charts, h('h2', { text: 'Queue' }), queue,
      h('h2', { text: 'Failures by reason (since start)' }), failures);
    const chartSends = chart(charts, 'chart-sends', 'Sends per second by provider');
    const chartQueue = chart(charts, 'chart-queue', 'Queue depth (queued + retrying) by lane');
    const chartLatency = chart(charts, 'chart-latency', 'Latency event → provider acceptance (s)');
    const chartEvents = chart(charts, 'chart-events', 'Events per second by source');
    ring = [];
    let since = null;

    async function tick() {
      try {
        const stats = await api('GET', '/v1/admin/stats' + (since ? '?since=' + encodeURIComponent(since) : ''));
        for (const sample of stats.samples) ring.push(sample);
        while (ring.length > 360) ring.shift();
        if (ring.length) since = ring[ring.length - 1].at;
        where.textContent = 'Node ' + stats.node + ' in region ' + stats.region + ' · samples every ' + stats.intervalSeconds +
          ' s, live totals every ' + POLL_MS / 1000 + ' s · updated ' + new Date(stats.totals.at).toLocaleTimeString();
        renderTiles(tiles, stats.totals, ring[ring.length - 1]);
        renderQueue(queue, stats.totals.queue);
        renderFailures(failures, stats.totals.failuresByReason);
        draw(chartSends, ring, ['apns', 'fcm', 'wns'].map((p) => ({ name: p, get: (x) => x.sendsPerSecond[p] || 0 })));
        draw(chartQueue, ring, ['priority', 'standard'].map((l) => ({
          name: l, get: (x) => ((x.queue[l] || {}).queued || 0) + ((x.queue[l] || {}).retrying || 0),
        })));
        draw(chartLatency, ring, [
          { name: 'p50', get: (x) => x.latencyP50Seconds },
          { name: 'p99', get: (x) => x.latencyP99Seconds },
        ]);
        const sources = [...new Set(ring.flatMap((x) => Object.keys(x.eventsPerSecond)))].sort();
        draw(chartEvents, ring, sources.map((src) => ({ name: src, get: (x) => x.eventsPerSecond[src] || 0 })));
        say('');
      } catch (e) {
        say('Dashboard: ' + e.message);
      }
      if ($('page').dataset.page === 'dashboard' && session) timer = setTimeout(tick, POLL_MS);
    }
    tick();
  }

  function fmt(n, digits) {
    if (n === null || n === undefined) return '–';
    if (typeof n !== 'number') return String(n);
    return n.toLocaleString(undefined, { maximumFractionDigits: digits === undefined ? 0 : digits });
  }

  function age(seconds) {
    if (!seconds) return '0 s';
    if (seconds < 120) return fmt(seconds, 1) + ' s';
    if (seconds < 7200) return fmt(seconds / 60, 1) + ' min';
    return fmt(seconds / 3600, 1) + ' h';
  }

  function renderTiles(dl, t, last) {
    const queued = Object.values(t.queue).reduce((n, l) => n + (l.queued || 0) + (l.retrying || 0), 0);
    const items = [
      ['events', 'Events received', fmt(t.events)],
      ['sent', 'Sent', fmt(t.sent)],
      ['rejections', 'Provider rejections', fmt(t.providerRejections)],
      ['waiting', 'Waiting in queue', fmt(queued)],
      ['oldest', 'Oldest queued', age(t.oldestQueuedAgeSeconds)],
      ['dead', 'Dead letters', fmt(t.dead)],
      ['p50', 'Latency p50 (10 s)', last && last.latencyP50Seconds != null ? fmt(last.latencyP50Seconds * 1000, 1) + ' ms' : '–'],
      ['p99', 'Latency p99 (10 s)', last && last.latencyP99Seconds != null ? fmt(last.latencyP99Seconds * 1000, 1) + ' ms' : '–'],
      ['connections', 'Open provider connections', fmt(t.openConnections)],
    ];
    dl.replaceChildren(...items.map(([id, label, value]) =>
      h('div', { class: 'tile' }, h('dt', { text: label }), h('dd', { id: 'tile-' + id, text: value }))));
  }

  function renderQueue(wrap, queue) {
    const lanes = Object.keys(queue).sort();
    const table = h('table', {},
      h('caption', { class: 'hint', text: 'Notifications per lane and state, now' }),
      h('thead', {}, h('tr', {}, h('th', { scope: 'col', text: 'Lane' }), STATES.map((st) => h('th', { scope: 'col', class: 'num', text: st })))),
      h('tbody', {}, lanes.map((l) => h('tr', { 'data-lane': l }, h('th', { scope: 'row', text: l }),
        STATES.map((st) => h('td', { class: 'num', 'data-state': st, text: fmt(queue[l][st] || 0) }))))));
    wrap.replaceChildren(table);
  }

  function renderFailures(wrap, byReason) {
    const rows = Object.entries(byReason).sort((a, b) => b[1] - a[1]);
    if (!rows.length) { wrap.replaceChildren(h('p', { class: 'hint', text: 'No provider rejections.' })); return; }
    wrap.replaceChildren(h('table', {},
      h('thead', {}, h('tr', {}, h('th', { scope: 'col', text: 'Reason' }), h('th', { scope: 'col', class: 'num', text: 'Count' }))),
      h('tbody', {}, rows.map(([r, n]) => h('tr', {}, h('td', {}, h('code', { text: r })), h('td', { class: 'num', text: fmt(n) }))))));
  }

  function chart(parent, id, title) {
    const svg = s('svg', { viewBox: '0 0 600 160', preserveAspectRatio: 'none', role: 'img', 'aria-label': title });
    const legend = h('ul', { class: 'legend' });
    const fig = h('figure', { class: 'chart', id }, h('figcaption', { text: title }), svg, legend);
    parent.append(fig);
    return { svg, legend, title };
  }

  /** A line chart of the samples over the last hour (x: time, y: 0..max). */
  function draw(c, samples, series) {
    const W = 600, H = 160, L = 34, B = 16, T = 6;
    const now = Date.now();
    const x = (t) => L + (W - L - 4) * Math.max(0, 1 - (now - t) / 3600000);
    let max = 0;
    for (const sr of series) for (const p of samples) { const v = sr.get(p); if (v != null && v > max) max = v; }
    const top = max > 0 ? niceCeil(max) : 1;
    const y = (v) => H - B - (H - B - T) * (v / top);
    const nodes = [
      s('line', { class: 'axis', x1: L, y1: H - B, x2: W, y2: H - B }),
      s('line', { class: 'axis', x1: L, y1: T, x2: L, y2: H - B }),
      text(2, T + 8, fmtAxis(top)), text(2, H - B, '0'), text(L, H - 3, '−60 min'), text(W - 30, H - 3, 'now'),
    ];
    const summary = [];
    series.forEach((sr, i) => {
      let d = '';
      let last = null;
      for (const p of samples) {
        const v = sr.get(p);
        if (v == null) { continue; }
        d += (d ? ' L' : 'M') + x(Date.parse(p.at)).toFixed(1) + ' ' + y(v).toFixed(1);
        last = v;
      }
      if (d) nodes.push(s('path', { d, fill: 'none', stroke: COLORS[i % COLORS.length], 'stroke-width': 2, 'vector-effect': 'non-scaling-stroke' }));
      for (const p of samples.slice(-1)) { // the newest point, visible even when it is the only one
        const v = sr.get(p);
        if (v != null) nodes.push(s('circle', { cx: x(Date.parse(p.at)).toFixed(1), cy: y(v).toFixed(1), r: 3, fill: COLORS[i % COLORS.length] }));
      }
      summary.push(sr.name + ' ' + (last == null ? 'no data' : fmtAxis(last)));
    });
    c.svg.replaceChildren(...nodes);
    c.svg.setAttribute('aria-label', c.title + ': latest ' + (summary.join(', ') || 'no data'));
    c.legend.replaceChildren(...series.map((sr, i) => {
      const sw = h('i', { 'aria-hidden': 'true' });
      sw.style.background = COLORS[i % COLORS.length];
      return h('li', {}, sw, sr.name);
    }));
  }

  function text(xp, yp, str) { const t = s('text', { x: xp, y: yp }); t.textContent = str; return t; }
  function fmtAxis(v) { return v >= 100 ? Math.round(v).toString() : v >= 1 ? v.toFixed(1) : v.toPrecision(2); }
  function niceCeil(v) {
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 5, 10]) if (v <= m * p) return m * p;
    return 10 * p;
  }

  // ---- registrations ---------------------------------------------------------------------------------------------

  /** A token fingerprint as Herald prints it (tok:1a2b3c4d), with or without the prefix. */
  const FINGERPRINT = /^(tok:)?[0-9a-f]{8}$/i;

  function registrations(root) {
    root.append(h('h1', { text: 'Registrations' }));
    const result = h('div', { id: 'registration-result', 'aria-live': 'polite' });
    const list = h('div', { id: 'registration-list' });
    const input = h('input', { id: 'registration-id', name: 'id', required: true, spellcheck: 'false', autocapitalize: 'off', placeholder: 'reg_… or tok:1a2b3c4d', 'aria-describedby': 'registration-hint' });
    const form = h('form', { id: 'registration-form', role: 'search' },
      h('label', { for: 'registration-id', text: 'Registration id or token fingerprint' }), input,
      h('p', { class: 'hint', id: 'registration-hint', text: 'A token fingerprint is how logs, webhooks and dead letters print a device token: "tok:" and 8 hex digits. It finds every registration of this key\'s tenant with that token.' }),
      h('button', { type: 'submit', text: 'Search' }),
      h('button', { type: 'button', class: 'secondary', id: 'registration-all', text: 'List all', onclick: () => { input.value = ''; result.replaceChildren(); loadList(null, null); } }));
    form.addEventListener('submit', (ev) => { ev.preventDefault(); search(input.value.trim()); });
    root.append(form, result, h('h2', { id: 'registration-list-title', text: 'Registrations' }), list);
    const params = new URLSearchParams(location.hash.split('?')[1] || '');
    const pre = params.get('id') || params.get('fingerprint');
    if (pre) { input.value = pre; search(pre); } else { loadList(null, null); }

    function search(text) {
      if (!text) { loadList(null, null); return; }
      if (FINGERPRINT.test(text)) {
        result.replaceChildren();
        loadList(text.toLowerCase().startsWith('tok:') ? text.toLowerCase() : 'tok:' + text.toLowerCase(), null);
      } else {
        show(text);
      }
    }

    /** A page of the tenant's registrations (by fingerprint, or all), with a button for the next page. */
    async function loadList(fingerprint, after) {
      const title = $('registration-list-title');
      if (title) title.textContent = fingerprint ? 'Registrations with token ' + fingerprint : 'Registrations';
      if (!after) list.replaceChildren(h('p', { class: 'hint', text: 'Loading…' }));
      const query = new URLSearchParams({ limit: '50' });
      if (fingerprint) query.set('fingerprint', fingerprint);
      if (after) query.set('after', after);
      try {
        const page = await api('GET', '/v1/registrations?' + query);
        let body = list.querySelector('tbody');
        if (!after || !body) {
          if (!page.items.length) {
            list.replaceChildren(h('p', { class: 'hint', id: 'registration-none', 'data-empty': 'true',
              text: fingerprint ? 'No registration of this tenant has a token with fingerprint ' + fingerprint + '.' : 'No registrations yet.' }));
            return;
          }
          body = h('tbody', {});
          list.replaceChildren(h('div', { class: 'table-wrap' }, h('table', { id: 'registration-table' },
            h('caption', { class: 'hint', text: fingerprint ? 'Matching registrations (a fingerprint is 32 bits: rarely, two tokens share one)' : 'This tenant\'s registrations, oldest first' }),
            h('thead', {}, h('tr', {}, ['Id', 'Status', 'Platform', 'Token', 'Source', 'Last push', 'Last event'].map((t) => h('th', { scope: 'col', text: t })))),
            body)));
        }
        for (const r of page.items) {
          body.append(h('tr', { 'data-id': r.id },
            h('td', {}, h('a', { href: '#/registrations?id=' + encodeURIComponent(r.id), onclick: (ev) => { ev.preventDefault(); input.value = r.id; show(r.id); } }, h('code', { text: r.id }))),
            h('td', {}, h('span', { class: 'badge ' + (r.status === 'active' ? 'ok' : 'bad'), text: r.status })),
            h('td', { text: r.platform }), h('td', {}, h('code', { text: r.tokenFingerprint })),
            h('td', { text: r.source + (r.connector ? ' (' + r.connector + ')' : '') }),
            h('td', { text: r.lastPush ? ((r.lastPush.result || '') + ' ' + (r.lastPush.at ? new Date(r.lastPush.at).toLocaleString() : '')).trim() : '–' }),
            h('td', { text: r.lastEventAt ? new Date(r.lastEventAt).toLocaleString() : '–' })));
        }
        const more = $('registration-more');
        if (more) more.remove();
        if (page.next) {
          list.append(h('button', { type: 'button', class: 'secondary', id: 'registration-more', text: 'More', onclick: () => loadList(fingerprint, page.next) }));
        }
      } catch (e) {
        list.replaceChildren(h('p', { class: 'error', role: 'alert', text: e.message }));
      }
    }

    async function show(id) {
      if (!id) return;
      result.replaceChildren(h('p', { class: 'hint', text: 'Looking up…' }));
      try {
        const r = await api('GET', '/v1/registrations/' + encodeURIComponent(id));
        const status = h('span', { class: 'badge ' + (r.status === 'active' ? 'ok' : 'bad'), id: 'registration-status', text: r.status });
        const fp = h('a', { href: '#/registrations?fingerprint=' + encodeURIComponent(r.tokenFingerprint), title: 'Every registration with this token',
          onclick: (ev) => { ev.preventDefault(); input.value = r.tokenFingerprint; search(r.tokenFingerprint); } }, h('code', { text: r.tokenFingerprint }));
        const rows = [
          ['Id', h('code', { text: r.id })], ['Status', status],
          ['Inactive reason', r.inactiveReason], ['Platform', r.platform], ['Token fingerprint', fp],
          ['Topic', r.topic], ['Environment', r.environment], ['Source', r.source], ['Connector', r.connector], ['Style', r.style], ['Locale', r.locale],
          ['Folders', (r.folders || []).join(', ')], ['Unread count', r.unreadCount], ['Last event', r.lastEventAt],
          ['Last push', r.lastPush ? (r.lastPush.at || '') + ' ' + (r.lastPush.result || '') : null],
          ['Created', r.createdAt], ['Updated', r.updatedAt],
        ];
        const table = h('table', { id: 'registration-detail' }, h('tbody', {}, rows.filter(([, v]) => v !== null && v !== undefined && v !== '')
          .map(([k, v]) => h('tr', {}, h('th', { scope: 'row', text: k }), h('td', {}, v)))));
        const del = h('button', { type: 'button', class: 'danger', id: 'deactivate', text: 'Deactivate (delete)' });
        del.addEventListener('click', async () => {
          if (!confirm('Delete registration ' + r.id + '? Its device gets no more pushes and Exchange is told to unsubscribe.')) return;
          try {
            await api('DELETE', '/v1/registrations/' + encodeURIComponent(r.id));
            say('Registration ' + r.id + ' deleted.');
            show(r.id);
          } catch (e) { say('Delete failed: ' + e.message); }
        });
        result.replaceChildren(h('h2', { text: 'Registration' }), h('div', { class: 'table-wrap' }, table), r.status === 'active' ? del : '');
      } catch (e) {
        result.replaceChildren(h('p', { class: 'error', role: 'alert', text: e.message }));
      }
    }
  }

  // ---- settings ----------------------------------------------------------------------------------------------------

  function settings(root) {
    root.append(h('h1', { text: 'Settings' }));
    if (!session.admin) { unavailable(root, 'Queue settings apply to the whole farm and need the admin key.'); return; }
    const holder = h('div', {});
    const history = h('div', { class: 'table-wrap', id: 'settings-history' });
    root.append(holder, h('h2', { text: 'Recent changes' }), history);
    load();

    async function load() {
      try {
        render(await api('GET', '/v1/admin/settings'));
        loadHistory();
      } catch (e) { holder.replaceChildren(h('p', { class: 'error', role: 'alert', text: e.message })); }
    }

    function field(id, label, value, attrs) {
      return h('div', {}, h('label', { for: id, text: label }), h('input', Object.assign({ id, name: id, value: value == null ? '' : value }, attrs || {})));
    }

    function lane(name, l) {
      const scope = h('select', { id: name + '-scope', name: name + '-scope' },
        h('option', { value: 'farm', selected: l.scope !== 'node', text: 'farm (one limit shared by all nodes)' }),
        h('option', { value: 'node', selected: l.scope === 'node', text: 'node (the limit on each node)' }));
      return h('fieldset', {}, h('legend', { text: name[0].toUpperCase() + name.slice(1) + ' lane' }),
        h('div', { class: 'row' },
          field(name + '-rate', 'Rate per minute (empty: unlimited)', l.ratePerMinute, { type: 'number', min: 1, inputmode: 'numeric' }),
          h('div', {}, h('label', { for: name + '-scope', text: 'Limit scope' }), scope),
          field(name + '-attempts', 'Max attempts (empty: the retry policy\'s)', l.maxAttempts, { type: 'number', min: 1, inputmode: 'numeric' })));
    }

    function render(cfg) {
      const error = h('p', { class: 'error', role: 'alert', id: 'settings-error' });
      const saved = h('p', { class: 'hint', id: 'settings-saved', 'aria-live': 'polite',
        text: cfg.version ? 'Version ' + cfg.version + (cfg.updatedAt ? ', saved ' + cfg.updatedAt : '') + (cfg.updatedBy ? ' by ' + cfg.updatedBy : '') : 'Defaults from configuration (never saved).' });
      const form = h('form', { id: 'settings-form', novalidate: true },
        lane('priority', cfg.lanes.priority || {}), lane('standard', cfg.lanes.standard || {}),
        h('fieldset', {}, h('legend', { text: 'Retry policy' }), h('div', { class: 'row' },
          field('retry-attempts', 'Max attempts', cfg.retry.maxAttempts, { type: 'number', min: 1, required: true, inputmode: 'numeric' }),
          field('retry-initial', 'Initial delay (hh:mm:ss)', cfg.retry.initialDelay, { required: true, pattern: '[0-9.:]+' }),
          field('retry-max', 'Max delay (hh:mm:ss)', cfg.retry.maxDelay, { required: true, pattern: '[0-9.:]+' }))),
        h('fieldset', {}, h('legend', { text: 'Provider connections' }), h('div', { class: 'row' },
          field('idle-timeout', 'Idle time before an APNs, FCM or WNS connection closes (hh:mm:ss; empty: configured default)',
            (cfg.connections || {}).idleTimeout, { pattern: '[0-9.:]*' }))),
        h('p', { class: 'hint', text: 'Saved settings take effect on every node within 5 seconds, without a restart.' }),
        h('button', { type: 'submit', id: 'settings-save', text: 'Save settings' }), error, saved);
      form.addEventListener('submit', async (ev) => {
        ev.preventDefault();
        error.textContent = '';
        const num = (id) => { const v = $(id).value.trim(); return v === '' ? null : Number(v); };
        const laneOf = (n) => ({ ratePerMinute: num(n + '-rate'), scope: $(n + '-scope').value, maxAttempts: num(n + '-attempts') });
        const body = {
          lanes: { priority: laneOf('priority'), standard: laneOf('standard') },
          retry: { maxAttempts: num('retry-attempts'), initialDelay: $('retry-initial').value.trim(), maxDelay: $('retry-max').value.trim() },
          connections: { idleTimeout: $('idle-timeout').value.trim() || null },
        };
        try {
          const result = await api('PUT', '/v1/admin/settings', body);
          say('Settings saved (version ' + result.version + ').');
          render(result);
          loadHistory();
          $('settings-saved').textContent = 'Saved: version ' + result.version + '.';
        } catch (e) { error.textContent = e.message; }
      });
      holder.replaceChildren(form);
    }

    async function loadHistory() {
      try {
        const changes = await api('GET', '/v1/admin/settings/history');
        if (!changes.length) { history.replaceChildren(h('p', { class: 'hint', text: 'No change saved yet.' })); return; }
        history.replaceChildren(h('table', {},
          h('thead', {}, h('tr', {}, ['Version', 'At', 'By', 'New settings'].map((t) => h('th', { scope: 'col', text: t })))),
          h('tbody', {}, changes.slice(0, 10).map((c) => h('tr', {}, h('td', { text: c.version }), h('td', { text: c.at }),
            h('td', {}, h('code', { text: c.actor || '' })), h('td', {}, h('code', { text: JSON.stringify(c.new) })))))));
      } catch (e) { history.replaceChildren(h('p', { class: 'error', text: e.message })); }
    }
  }

  // ---- dead letters --------------------------------------------------------------------------------------------------

  function dead(root) {
    root.append(h('h1', { text: 'Dead letters' }),
      h('p', { class: 'hint', text: session.admin ? 'Notifications whose attempts are exhausted, across all tenants.' : 'Your tenant\'s notifications whose attempts are exhausted.' }));
    const list = h('div', { id: 'dead-list' });
    const selectedIds = () => [...list.querySelectorAll('input[type=checkbox][data-id]:checked')].map((c) => Number(c.dataset.id));
    const act = (what, all) => async () => {
      const ids = all ? null : selectedIds();
      if (!all && !ids.length) { say('Select at least one dead letter.'); return; }
      if (what === 'purge' && !confirm(all ? 'Purge every dead letter?' : 'Purge ' + ids.length + ' dead letter(s)?')) return;
      try {
        const r = await api('POST', '/v1/admin/dead/' + what, all ? {} : { ids });
        say((what === 'requeue' ? 'Requeued ' : 'Purged ') + r.count + ' notification(s).');
        load();
      } catch (e) { say(e.message); }
    };
    root.append(h('div', {},
      h('button', { type: 'button', id: 'dead-requeue', onclick: act('requeue', false), text: 'Requeue selected' }),
      h('button', { type: 'button', id: 'dead-requeue-all', class: 'secondary', onclick: act('requeue', true), text: 'Requeue all' }),
      h('button', { type: 'button', id: 'dead-purge', class: 'danger', onclick: act('purge', false), text: 'Purge selected' }),
      h('button', { type: 'button', id: 'dead-refresh', class: 'secondary', onclick: () => load(), text: 'Refresh' })), list);
    load();

    async function load() {
      try {
        const r = await api('GET', '/v1/admin/dead?limit=500');
        if (!r.items.length) { list.replaceChildren(h('p', { class: 'hint', id: 'dead-empty', text: 'No dead letters.' })); return; }
        list.replaceChildren(h('div', { class: 'table-wrap' }, h('table', {},
          h('caption', { class: 'hint', text: r.items.length + ' dead letter(s)' }),
          h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, h('span', { class: 'hint', text: 'Select' })),
            ['Id', 'Registration', 'Platform', 'Token', 'Attempts', 'Last status', 'Reason'].map((t) => h('th', { scope: 'col', text: t })))),
          h('tbody', {}, r.items.map((n) => h('tr', { 'data-id': n.id },
            h('td', {}, h('input', { type: 'checkbox', 'data-id': n.id, id: 'dead-' + n.id, 'aria-label': 'Select dead letter ' + n.id })),
            h('td', { class: 'num', text: n.id }),
            h('td', {}, n.registrationId ? h('a', { href: '#/registrations?id=' + encodeURIComponent(n.registrationId) }, h('code', { text: n.registrationId })) : '–'),
            h('td', { text: n.platform }), h('td', {}, h('code', { text: n.tokenFingerprint || '' })),
            h('td', { class: 'num', text: n.attempts }), h('td', { class: 'num', text: n.lastStatus || '' }), h('td', {}, h('code', { text: n.lastReason || '' }))))))));
      } catch (e) { list.replaceChildren(h('p', { class: 'error', role: 'alert', text: e.message })); }
    }
  }

  // ---- credentials, connectors, nodes: shown when this server offers them ------------------------------------------

  /** Renders whatever list an endpoint answers: a root array, or the first array property. */
  function genericTable(json) {
    const items = Array.isArray(json) ? json : (Object.values(json || {}).find(Array.isArray) || []);
    if (!items.length) return h('p', { class: 'hint', 'data-empty': 'true', text: 'None.' });
    const cols = [...new Set(items.flatMap((i) => Object.keys(i)))];
    const now = Date.now();
    return h('div', { class: 'table-wrap' }, h('table', {},
      h('thead', {}, h('tr', {}, cols.map((c) => h('th', { scope: 'col', text: c })))),
      h('tbody', {}, items.map((i) => h('tr', {}, cols.map((c) => {
        const v = i[c];
        const cell = h('td', {});
        if (v === null || v === undefined) return cell;
        cell.textContent = typeof v === 'object' ? JSON.stringify(v) : String(v);
        if (/expir|notafter|heartbeat/i.test(c) && typeof v === 'string' && !isNaN(Date.parse(v))) {
          const days = (Date.parse(v) - now) / 86400000;
          if (/heartbeat/i.test(c)) {
            const secs = (now - Date.parse(v)) / 1000;
            cell.append(' ', h('span', { class: 'badge ' + (secs < 30 ? 'ok' : 'bad'), text: secs < 30 ? 'alive' : 'silent ' + Math.round(secs) + ' s' }));
          } else if (days < 30) {
            cell.append(' ', h('span', { class: 'badge ' + (days < 0 ? 'bad' : 'warn'), text: days < 0 ? 'expired' : 'expires in ' + Math.ceil(days) + ' d' }));
          }
        }
        return cell;
      }))))));
  }

  /** A credential's expiry with its badge: expired, or expiring within 30 days. */
  function expiryCell(iso) {
    const cell = h('td', { 'data-col': 'expires' });
    if (!iso) { cell.textContent = '–'; return cell; }
    const days = (Date.parse(iso) - Date.now()) / 86400000;
    cell.append(h('span', { title: iso, text: new Date(iso).toLocaleDateString() }));
    if (days < 30) cell.append(' ', h('span', { class: 'badge ' + (days < 0 ? 'bad' : 'warn'), text: days < 0 ? 'expired' : 'expires in ' + Math.ceil(days) + ' d' }));
    return cell;
  }

  /** Credentials: what matters first (kind, topics, expiry with its warning, a provider's refusal), the long thumbprint last. */
  function credentialTable(json) {
    const items = (json && json.items) || [];
    if (!items.length) return h('p', { class: 'hint', 'data-empty': 'true', text: 'None.' });
    const soon = items.filter((c) => c.expiresAt && (Date.parse(c.expiresAt) - Date.now()) / 86400000 < 30);
    return h('div', {},
      soon.length ? h('p', { class: 'error', role: 'alert', id: 'cred-expiry-warning', text: soon.length + ' credential(s) expired or expiring within 30 days: upload a renewed one below.' }) : '',
      h('div', { class: 'table-wrap' }, h('table', {},
        h('thead', {}, h('tr', {}, ['Platform', 'Kind', 'Topics', 'Expires', 'Health', 'Id', 'Updated', 'Thumbprint'].map((t) => h('th', { scope: 'col', text: t })))),
        h('tbody', {}, items.map((c) => h('tr', { 'data-platform': c.platform },
          h('td', { text: c.platform }), h('td', { text: c.kind }), h('td', { text: (c.topics || []).join(', ') || '–' }), expiryCell(c.expiresAt),
          h('td', {}, c.fault ? h('span', { class: 'badge bad', title: c.fault.reason || '', text: 'refused ' + (c.fault.status || '') + ' ' + (c.fault.reason || '') }) : h('span', { class: 'badge ok', text: 'ok' })),
          h('td', {}, h('code', { text: c.id || '' })), h('td', { text: c.updatedAt ? new Date(c.updatedAt).toLocaleString() : '' }),
          h('td', {}, c.thumbprint ? h('code', { title: c.thumbprint, text: c.thumbprint.slice(0, 16) + '…' }) : '–')))))));
  }

  async function listPage(root, title, path, intro, render) {
    root.append(h('h1', { text: title }));
    if (intro) root.append(intro);
    const body = h('div', { id: 'list-body' }, h('p', { class: 'hint', text: 'Loading…' }));
    root.append(body);
    try {
      body.replaceChildren((render || genericTable)(await api('GET', path)));
    } catch (e) {
      body.replaceChildren();
      if (notAvailable(e)) unavailable(body, 'Not available: this server does not offer ' + path + '.');
      else body.append(h('p', { class: 'error', role: 'alert', text: e.message }));
    }
  }

  function credentials(root) {
    const input = h('input', { id: 'tenant-id', name: 'tenant', value: sessionStorage.getItem(TENANT) || '', spellcheck: 'false', autocapitalize: 'off', required: true, placeholder: 'tn_…' });
    const form = h('form', { id: 'tenant-form' }, h('label', { for: 'tenant-id', text: 'Tenant id' }), input, h('button', { type: 'submit', text: 'Show credentials' }));
    root.append(h('h1', { text: 'Credentials' }), form);
    const out = h('div', {});
    root.append(out);
    const show = () => {
      const id = input.value.trim();
      if (!id) return;
      sessionStorage.setItem(TENANT, id);
      out.replaceChildren();
      listPage(out, 'Credentials of ' + id, '/v1/tenants/' + encodeURIComponent(id) + '/credentials',
        h('p', { class: 'hint', text: 'Kind, topics, thumbprint and expiry; a credential expiring within 30 days is flagged.' }), credentialTable);
      const h1 = out.querySelector('h1');
      if (h1) h1.replaceWith(h('h2', { text: h1.textContent }));
    };
    form.addEventListener('submit', (ev) => { ev.preventDefault(); show(); });
    if (input.value) show();
    root.append(uploadForm(() => input.value.trim(), show));
  }

  /** Upload or replace a tenant's credential (PUT /v1/tenants/{id}/credentials/{platform}); files are read in the browser. */
  function uploadForm(tenant, reload) {
    const kind = h('select', { id: 'cred-kind', name: 'cred-kind' },
      h('option', { value: 'apns-token', text: 'APNs token key (.p8)' }),
      h('option', { value: 'apns-certificate', text: 'APNs certificate (.p12)' }),
      h('option', { value: 'fcm', text: 'FCM service account (JSON)' }),
      h('option', { value: 'wns', text: 'WNS Package SID and secret' }));
    const field = (id, label, attrs) => h('div', { 'data-for': attrs && attrs['data-for'] }, h('label', { for: id, text: label }), h('input', Object.assign({ id, name: id }, attrs || {})));
    const groups = {
      'apns-token': [field('cred-team', 'Team ID'), field('cred-key-id', 'Key ID'), field('cred-p8', 'Signing key file (.p8)', { type: 'file', accept: '.p8,.pem' })],
      'apns-certificate': [field('cred-p12', 'Certificate file (.p12)', { type: 'file', accept: '.p12,.pfx' }), field('cred-password', 'Certificate password', { type: 'password', autocomplete: 'off' })],
      fcm: [field('cred-sa', 'Service account file (JSON)', { type: 'file', accept: '.json,application/json' })],
      wns: [field('cred-sid', 'Package SID'), field('cred-secret', 'Client secret', { type: 'password', autocomplete: 'off' })],
    };
    const topics = field('cred-topics', 'Topics (bundle ids, comma-separated)', { spellcheck: 'false', autocapitalize: 'off' });
    const result = h('p', { id: 'cred-result', role: 'status' });
    const box = h('div', {}, Object.values(groups).flat());
    const sync = () => {
      for (const [k, els] of Object.entries(groups)) for (const el of els) el.hidden = k !== kind.value;
      topics.hidden = !kind.value.startsWith('apns');
    };
    kind.addEventListener('change', sync);
    const readText = (id) => { const f = $(id).files[0]; return f ? f.text() : Promise.resolve(null); };
    const readBase64 = async (id) => {
      const f = $(id).files[0];
      if (!f) return null;
      const bytes = new Uint8Array(await f.arrayBuffer());
      let bin = '';
      for (let i = 0; i < bytes.length; i += 0x8000) bin += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
      return btoa(bin);
    };
    const form = h('form', { id: 'cred-form' },
      h('h2', { text: 'Upload or replace a credential' }),
      h('fieldset', {}, h('legend', { text: 'Credential' }),
        h('div', {}, h('label', { for: 'cred-kind', text: 'Kind' }), kind), box, topics,
        h('button', { type: 'submit', id: 'cred-upload', text: 'Upload' }), result));
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const id = tenant();
      if (!id) { result.textContent = 'Enter the tenant id first.'; return; }
      const list = $('cred-topics').value.split(',').map((t) => t.trim()).filter(Boolean);
      let platform, body;
      try {
        switch (kind.value) {
          case 'apns-token':
            platform = 'apns';
            body = { teamId: $('cred-team').value.trim(), keyId: $('cred-key-id').value.trim(), privateKeyPem: await readText('cred-p8'), topics: list };
            break;
          case 'apns-certificate':
            platform = 'apns';
            body = { certificatePfxBase64: await readBase64('cred-p12'), password: $('cred-password').value, topics: list };
            break;
          case 'fcm':
            platform = 'fcm';
            body = { serviceAccountJson: await readText('cred-sa') };
            break;
          default:
            platform = 'wns';
            body = { packageSid: $('cred-sid').value.trim(), clientSecret: $('cred-secret').value };
        }
        const saved = await api('PUT', '/v1/tenants/' + encodeURIComponent(id) + '/credentials/' + platform, body);
        result.textContent = 'Saved ' + saved.platform + ' ' + saved.kind + ' credential' + (saved.expiresAt ? ', expires ' + saved.expiresAt : '') + '.';
        for (const f of form.querySelectorAll('input[type=file], input[type=password]')) f.value = '';
        reload();
      } catch (e) {
        result.textContent = notAvailable(e) ? 'Not available: this server does not take credential uploads.' : 'Upload failed: ' + e.message;
      }
    });
    sync();
    return form;
  }

  /** "in 3 h" / "5 min ago" for a time, relative to now. */
  function ago(iso) {
    if (!iso) return '–';
    const secs = (Date.now() - Date.parse(iso)) / 1000;
    return secs >= 0 ? age(secs) + ' ago' : 'in ' + age(-secs);
  }

  function faultList(faults) {
    if (!faults || !faults.length) return null;
    return h('ul', { class: 'faults', role: 'alert' }, faults.map((f) => h('li', { class: 'error' },
      h('span', { class: 'badge bad', text: f.operation }), ' failing: ' + (f.status ? f.status + ' ' : 'unreachable ') + (f.code || '') +
      ' · ' + f.count + '× in a row, last ' + ago(f.at))));
  }

  function connectors(root) {
    root.append(h('h1', { text: 'Connectors' }),
      h('p', { class: 'hint', text: 'EWS streaming, Graph and Dovecot connectors of this key\'s tenant, with their EWS streaming groups and Graph subscriptions. Refreshed every 5 s.' }));
    const body = h('div', { id: 'list-body' }, h('p', { class: 'hint', text: 'Loading…' }));
    const details = h('div', { id: 'connector-details' });
    root.append(body, details);
    let first = true;

    async function load() {
      try {
        const r = await api('GET', '/v1/connectors');
        const items = r.items || [];
        if (!items.length) {
          body.replaceChildren(h('p', { class: 'hint', 'data-empty': 'true', text: 'No connectors. Create one with PUT /v1/connectors/{name}.' }));
          details.replaceChildren();
        } else {
          body.replaceChildren(h('div', { class: 'table-wrap' }, h('table', { id: 'connector-table' },
            h('thead', {}, h('tr', {}, ['Name', 'Kind', 'Endpoint', 'Registrations', 'Updated'].map((t) => h('th', { scope: 'col', text: t })))),
            h('tbody', {}, items.map((c) => h('tr', { 'data-connector': c.name },
              h('td', {}, h('a', { href: '#connector-' + c.name, text: c.name })), h('td', { text: c.kind }),
              h('td', {}, h('code', { text: c.ewsUrl || c.baseUrl || (c.autodiscover ? 'Autodiscover' : '') || '' })),
              h('td', { class: 'num', text: fmt(c.registrations) }), h('td', { text: c.updatedAt ? new Date(c.updatedAt).toLocaleString() : '' })))))));
          const sections = await Promise.all(items.map(section));
          details.replaceChildren(...sections);
        }
        if (first) { say(''); first = false; }
      } catch (e) {
        body.replaceChildren();
        if (notAvailable(e)) unavailable(body, 'Not available: this server does not offer /v1/connectors.');
        else body.append(h('p', { class: 'error', role: 'alert', text: e.message }));
      }
      if ($('page').dataset.page === 'connectors' && session) timer = setTimeout(load, 5000);
    }

    async function section(c) {
      const sec = h('section', { id: 'connector-' + c.name, 'data-kind': c.kind, 'aria-labelledby': 'connector-title-' + c.name },
        h('h2', { id: 'connector-title-' + c.name, text: c.name + ' (' + c.kind + ')' }));
      try {
        if (c.kind === 'ews') sec.append(...streaming(await api('GET', '/v1/connectors/' + encodeURIComponent(c.name) + '/streaming')));
        else if (c.kind === 'graph') sec.append(...subscriptions(await api('GET', '/v1/connectors/' + encodeURIComponent(c.name) + '/subscriptions')));
        else sec.append(h('p', { class: 'hint', text: 'Dovecot pushes to Herald (' + location.origin + '/dovecot/notify/' + c.name + '); Herald keeps no connection or subscription for it.' }));
      } catch (e) {
        if (notAvailable(e)) sec.append(h('p', { class: 'unavailable', 'data-unavailable': 'true', text: 'This server does not show connector state.' }));
        else sec.append(h('p', { class: 'error', role: 'alert', text: e.message }));
      }
      return sec;
    }

    function streaming(s) {
      const out = [faultList(s.faults)];
      const members = s.groups.reduce((n, g) => n + g.members, 0);
      const connected = s.groups.filter((g) => g.connected).length;
      out.push(h('p', { class: 'hint', 'data-summary': 'streaming', text: s.groups.length + ' streaming group(s) on this node (' + s.node + '), ' + connected + ' connected, ' + members + ' mailbox(es); ' +
        s.leases.length + ' group lease(s) in the farm.' }));
      if (s.groups.length) {
        out.push(h('div', { class: 'table-wrap' }, h('table', { class: 'streaming-groups' },
          h('caption', { class: 'hint', text: 'EWS streaming groups on this node (mailboxes are shown only as fingerprints)' }),
          h('thead', {}, h('tr', {}, ['Group', 'EWS URL / grouping', 'Anchor', 'Members', 'Subscribed', 'Connection', 'Streams opened', 'Last heartbeat', 'Last event', 'Last error', 'Owner']
            .map((t) => h('th', { scope: 'col', text: t })))),
          h('tbody', {}, s.groups.map((g) => h('tr', { 'data-group': g.id },
            h('td', { class: 'num', text: g.id }), h('td', {}, h('code', { text: g.key })), h('td', {}, h('code', { text: g.anchor })),
            h('td', { class: 'num', 'data-col': 'members', text: g.members }), h('td', { class: 'num', 'data-col': 'subscribed', text: g.subscribed }),
            h('td', { 'data-col': 'connected' }, h('span', { class: 'badge ' + (g.connected ? 'ok' : 'bad'), text: g.connected ? 'connected' : 'disconnected' })),
            h('td', { class: 'num', text: g.connectionsOpened }), h('td', { 'data-col': 'heartbeat', text: ago(g.lastHeartbeatAt) }),
            h('td', { 'data-col': 'event', text: ago(g.lastEventAt) }), h('td', {}, g.lastError ? h('code', { text: g.lastError }) : '–'),
            h('td', {}, h('code', { text: g.owner }))))))));
      }
      const remote = s.leases.filter((l) => !l.thisNode);
      if (remote.length) {
        out.push(h('div', { class: 'table-wrap' }, h('table', { class: 'streaming-leases' },
          h('caption', { class: 'hint', text: 'Groups streamed by other nodes' }),
          h('thead', {}, h('tr', {}, ['Group', 'Owner', 'Lease expires'].map((t) => h('th', { scope: 'col', text: t })))),
          h('tbody', {}, remote.map((l) => h('tr', {}, h('td', {}, h('code', { text: l.group })), h('td', {}, h('code', { text: l.owner })), h('td', { text: ago(l.expiresAt) })))))));
      }
      return out.filter(Boolean);
    }

    function subscriptions(g) {
      const out = [faultList(g.faults)];
      const soon = g.items.filter((i) => i.state !== 'active').length;
      out.push(h('p', { class: 'hint', 'data-summary': 'graph', text: g.items.length + ' Graph subscription(s)' + (soon ? ', ' + soon + ' needing attention' : '') + '; each is renewed a quarter of its lifetime before it expires.' }));
      if (g.items.length) {
        const badge = (st) => h('span', { class: 'badge ' + (st === 'active' ? 'ok' : st === 'expired' || st === 'removed' ? 'bad' : 'warn'), text: st });
        out.push(h('div', { class: 'table-wrap' }, h('table', { class: 'graph-subscriptions' },
          h('caption', { class: 'hint', text: 'Graph subscriptions, soonest expiry first' }),
          h('thead', {}, h('tr', {}, ['Subscription', 'Mailbox', 'State', 'Expires', 'Renews', 'Last renewed', 'Managed by'].map((t) => h('th', { scope: 'col', text: t })))),
          h('tbody', {}, g.items.map((i) => h('tr', { 'data-subscription': i.id || '' },
            h('td', {}, h('code', { text: i.id || '(being created)' })), h('td', {}, h('code', { text: i.mailbox })), h('td', { 'data-col': 'state' }, badge(i.state)),
            h('td', { 'data-col': 'expires', title: i.expiresAt, text: new Date(i.expiresAt).toLocaleString() + ' (' + ago(i.expiresAt) + ')' }),
            h('td', { text: ago(i.renewAt) }), h('td', { text: ago(i.renewedAt) }), h('td', {}, h('code', { text: i.leaseOwner || '–' }))))))));
      }
      return out.filter(Boolean);
    }

    load();
  }

  function nodes(root) {
    if (!session.admin) { root.append(h('h1', { text: 'Nodes' })); unavailable(root, 'Farm nodes need the admin key.'); return; }
    listPage(root, 'Nodes', '/v1/admin/nodes', h('p', { class: 'hint', text: 'Farm nodes and their last heartbeat.' }));
  }

  // ---- start ---------------------------------------------------------------------------------------------------------

  document.addEventListener('DOMContentLoaded', () => {
    $('sign-in-form').addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const button = $('sign-in-button');
      button.disabled = true;
      $('sign-in-error').textContent = '';
      try {
        await signIn($('api-key').value.trim());
        showApp();
      } catch (e) {
        $('sign-in-error').textContent = e instanceof ApiError && e.status === 401 ? 'This key was not accepted.' : 'Sign-in failed: ' + e.message;
      } finally {
        button.disabled = false;
      }
    });
    $('sign-out').addEventListener('click', () => signOut(''));
    window.addEventListener('hashchange', route);
    const stored = sessionStorage.getItem(KEY);
    if (stored) {
      signIn(stored).then(showApp, () => showSignIn(''));
    } else {
      showSignIn('');
    }
  });
})();
