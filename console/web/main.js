// flowlens console: a single page; the hash holds the page and the filter
// (#/top?range=1h&app=DNS), so changing a filter refetches one page's JSON
// and never reloads. Data from flows (names, addresses, evidence) is only
// ever set with textContent or drawn on the chart's canvas; nothing built
// from it is parsed as HTML.
import * as echarts from 'echarts/core';
import { LineChart } from 'echarts/charts';
import { GridComponent, TooltipComponent, LegendComponent } from 'echarts/components';
import { CanvasRenderer } from 'echarts/renderers';

echarts.use([LineChart, GridComponent, TooltipComponent, LegendComponent, CanvasRenderer]);

const API = '/api/v1/console/';
// from/to (RFC 3339 or Unix seconds) are an absolute range; they take the
// place of the range preset.
const FILTERS = ['range', 'from', 'to', 'exporter', 'pool', 'app', 'addr', 'port'];
const $ = (sel, root = document) => root.querySelector(sel);

// el builds an element: attributes (never innerHTML), then children
// (strings become text nodes).
function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(e.dataset, v);
    else e.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

// ---- state in the hash ----------------------------------------------------

function parseHash() {
  const h = location.hash.replace(/^#\/?/, '');
  const [page, qs] = h.split('?');
  return { page: page || 'overview', q: new URLSearchParams(qs || '') };
}

function setHash(page, q) {
  const s = q.toString();
  const h = '#/' + page + (s ? '?' + s : '');
  if (location.hash !== h) location.hash = h; // hashchange renders
  else render();
}

function filterParams(q) {
  const p = new URLSearchParams();
  for (const k of FILTERS) if (q.get(k)) p.set(k, q.get(k));
  if (p.get('from')) p.delete('range');
  else {
    p.delete('to');
    if (!p.get('range')) p.set('range', '1h');
  }
  return p;
}

// Client-side checks only help the user: the server validates everything.
const CHECKS = {
  exporter: (v) => /^[0-9a-fA-F:.]+$/.test(v),
  addr: (v) => /^[0-9a-fA-F:.]+(\/\d{1,3})?$/.test(v),
  port: (v) => /^\d{1,5}$/.test(v) && +v <= 65535,
  from: (v) => TIME.test(v),
  to: (v) => TIME.test(v),
};
const TIME = /^(\d{1,11}|\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d(\.\d+)?)?(Z|[+-]\d\d:\d\d))$/;

function readForm() {
  const form = $('#filters');
  const { page, q } = parseHash();
  let ok = true;
  for (const k of FILTERS) {
    const input = form.elements[k];
    const v = input.value.trim();
    const bad = v !== '' && CHECKS[k] && !CHECKS[k](v);
    input.setAttribute('aria-invalid', bad ? 'true' : 'false');
    if (bad) ok = false;
    if (v && v !== 'custom') q.set(k, v); else q.delete(k);
  }
  if (q.get('to') && !q.get('from')) {
    form.elements.from.setAttribute('aria-invalid', 'true');
    ok = false;
  }
  if (ok) setHash(page, q);
}

function writeForm(q) {
  const form = $('#filters');
  for (const k of FILTERS) form.elements[k].value = q.get(k) || (k === 'range' ? '1h' : '');
  if (q.get('from')) form.elements.range.value = 'custom';
}

// ---- fetching ---------------------------------------------------------------

let token = sessionStorage.getItem('flowlens-token') || '';

async function api(path, params, init = {}) {
  const url = API + path + (params ? '?' + params.toString() : '');
  const headers = Object.assign({}, init.headers || {});
  if (token) headers.Authorization = 'Bearer ' + token;
  const resp = await fetch(url, Object.assign({}, init, { headers, credentials: 'same-origin' }));
  if (resp.status === 401 && (resp.headers.get('WWW-Authenticate') || '').startsWith('Bearer')) {
    const t = window.prompt('flowlens console token');
    if (t) {
      token = t;
      sessionStorage.setItem('flowlens-token', t);
      return api(path, params, init);
    }
  }
  if (!resp.ok) {
    let msg = resp.status + ' ' + resp.statusText;
    try { msg = (await resp.json()).error || msg; } catch (_) { /* not JSON */ }
    throw new Error(msg);
  }
  return init.raw ? resp : resp.json();
}

function showError(err) {
  const box = $('#error');
  if (!err) { box.hidden = true; box.textContent = ''; return; }
  box.hidden = false;
  box.textContent = String(err.message || err);
}

function showMeta(m, extra) {
  const parts = [];
  if (m && m.table) parts.push('from ' + m.table);
  if (m && m.step) parts.push('step ' + m.step + ' s');
  if (m && m.elapsed_ms !== undefined) parts.push(m.elapsed_ms.toFixed(1) + ' ms');
  if (m && m.note) parts.push('approximate: ' + m.note);
  if (extra) parts.push(extra);
  $('#meta').textContent = parts.join(' · ');
}

// ---- formatting -------------------------------------------------------------

function human(v, unit = '') {
  const abs = Math.abs(v);
  const k = [[1e15, 'P'], [1e12, 'T'], [1e9, 'G'], [1e6, 'M'], [1e3, 'k']].find(([d]) => abs >= d);
  return k ? (v / k[0]).toFixed(1) + ' ' + k[1] + unit : (Number.isInteger(v) ? v : v.toFixed(2)) + (unit ? ' ' + unit : '');
}

const BYTE_COLS = /bytes/;
function fmtCell(col, v) {
  if (typeof v === 'number') return BYTE_COLS.test(col) ? human(v, 'B') : (Number.isInteger(v) ? v.toLocaleString('en') : String(v));
  if (Array.isArray(v)) return v.join(', ');
  if (v && typeof v === 'object') return Object.entries(v).map(([k, n]) => k + ' ' + fmtCell('', n)).join(', ');
  return v === undefined || v === null ? '' : String(v);
}

function fmtTime(unix) {
  return unix ? new Date(unix * 1000).toISOString().replace('T', ' ').replace(/\.000Z$/, 'Z') : '';
}

// table renders {columns, rows}; links[col](value) returns an href for a
// cell, onCell[col](value) a click action. Cells carry their raw value in
// data-value (what the browser tests read).
function table(t, { links = {}, actions = {}, times = [], id } = {}) {
  const cols = t.columns || [];
  const maxBytes = {};
  cols.forEach((c, j) => { if (BYTE_COLS.test(c)) maxBytes[j] = Math.max(1, ...t.rows.map((r) => r[j] || 0)); });
  const head = el('tr', {}, cols.map((c, j) => el('th', { class: typeof (t.rows[0] || [])[j] === 'number' ? 'num' : '', text: c })));
  const body = t.rows.map((r) => el('tr', {}, r.map((v, j) => {
    const col = cols[j];
    const num = typeof v === 'number';
    const text = times.includes(col) ? fmtTime(v) : fmtCell(col, v);
    let content = text;
    if (links[col] && v !== '') content = el('a', { href: links[col](v), text });
    else if (actions[col] && v !== '') content = el('a', { href: '#', text, onclick: (e) => { e.preventDefault(); actions[col](v); } });
    const td = el('td', { class: (num ? 'num' : 'wrap') + (col === 'severity' ? ' sev-' + v : ''), title: num ? String(v) : undefined,
      dataset: { col, value: typeof v === 'object' ? JSON.stringify(v) : String(v) } }, content);
    if (maxBytes[j] !== undefined && col === 'bytes') td.append(el('span', { class: 'bar', style: 'width:' + Math.round(100 * v / maxBytes[j]) + '%' }));
    return td;
  })));
  return el('table', { id }, el('thead', {}, head), el('tbody', {}, body));
}

function card(k, v, id) { return el('div', { class: 'card' }, el('div', { class: 'k', text: k }), el('div', { class: 'v', id, text: v })); }

// ---- charts -----------------------------------------------------------------

const charts = {};
window.__flowlens = { charts }; // the browser tests read the charts' data

function chart(name, container, times, series, unit) {
  if (charts[name]) { charts[name].dispose(); delete charts[name]; }
  const c = echarts.init(container, null, { renderer: 'canvas' });
  charts[name] = c;
  c.setOption({
    animation: false,
    // richText: the tooltip is drawn, not HTML, so names from flows cannot inject markup.
    tooltip: { trigger: 'axis', renderMode: 'richText', valueFormatter: (v) => human(v, unit) },
    legend: { type: 'scroll', top: 0 },
    grid: { left: 70, right: 20, top: 36, bottom: 30 },
    xAxis: { type: 'time' },
    yAxis: { type: 'value', axisLabel: { formatter: (v) => human(v, unit) } },
    series: series.map((s) => ({
      name: s.name, type: 'line', stack: s.stack === false ? undefined : 'total', areaStyle: s.stack === false ? undefined : {},
      showSymbol: false, lineStyle: { width: 1 }, emphasis: { focus: 'series' },
      data: times.map((t, i) => [t * 1000, s.values[i]]),
    })),
  });
  return c;
}

window.addEventListener('resize', () => Object.values(charts).forEach((c) => c.resize()));

const RATE = { bytes: ['bit/s', 8], packets: ['pkt/s', 1], flows: ['flows/s', 1] };

// ---- pages --------------------------------------------------------------------

const pages = {
  async overview(main, q) {
    const by = q.get('by') || 'application';
    const metric = q.get('metric') || 'bytes';
    const p = filterParams(q);
    p.set('by', by);
    p.set('metric', metric);
    const sel = (name, options, value) => el('label', {}, name + ' ', el('select', { name, onchange: (e) => { q.set(name, e.target.value); setHash('overview', q); } },
      options.map(([v, t]) => el('option', { value: v, selected: v === value, text: t }))));
    main.append(el('div', { class: 'panel' },
      el('div', { class: 'row' }, sel('by', [['application', 'by application'], ['category', 'by category']], by),
        sel('metric', [['bytes', 'bits/s'], ['packets', 'packets/s'], ['flows', 'flows/s']], metric)),
      el('div', { class: 'chart', id: 'chart-overview' })));
    const s = await api('overview', p);
    const [unit, mul] = RATE[metric];
    const series = s.series.map((r) => ({ name: r.name, values: r.values.map((v) => v * mul / s.step) }));
    chart('overview', $('#chart-overview'), s.times, series, unit);
    main.append(el('div', { class: 'panel' }, el('h2', { text: 'Totals (' + metric + ')' }),
      table({ columns: [by, metric], rows: s.series.map((r) => [r.name, r.total]) }, {
        id: 'totals', actions: by === 'application' ? { application: (v) => { if (v !== 'Other') { q.set('app', v); setHash('overview', q); } } } : {},
      })));
    showMeta(s);
  },

  async top(main, q) {
    const dims = [['applications', 'Applications'], ['talkers', 'Talkers'], ['conversations', 'Conversations'],
      ['countries', 'Countries'], ['asns', 'ASNs'], ['servers', 'Server names']];
    const dim = q.get('dim') || 'applications';
    main.append(el('div', { class: 'row', id: 'dims' }, dims.map(([d, t]) => el('button', {
      type: 'button', class: 'tab' + (d === dim ? ' active' : ''), dataset: { dim: d }, text: t,
      onclick: () => { q.set('dim', d); setHash('top', q); },
    }))));
    const p = filterParams(q);
    p.set('dim', dim);
    p.set('limit', '50');
    const r = await api('top', p);
    const hostLink = (v) => '#/host?' + new URLSearchParams(Object.assign(Object.fromEntries(filterParams(q)), { host: v })).toString();
    const setFilter = (k) => (v) => { q.set(k, String(v)); setHash('top', q); };
    main.append(el('div', { class: 'panel' }, r.rows.length ? table(r, {
      id: 'top-table',
      links: { address: hostLink, src: hostLink, dst: hostLink },
      actions: { application: setFilter('app'), pool: setFilter('pool') },
    }) : el('p', { class: 'muted', text: 'Nothing in this range' + (dim === 'countries' || dim === 'asns' ? ' (countries and ASNs need the GeoIP databases)' : '') + '.' })));
    showMeta(r);
  },

  async host(main, q) {
    const form = el('form', { class: 'row', onsubmit: (e) => { e.preventDefault(); const v = e.target.elements.host.value.trim(); if (v) { q.set('host', v); setHash('host', q); } } },
      el('label', {}, 'Address ', el('input', { name: 'host', value: q.get('host') || '', placeholder: '10.0.0.1', size: 24 })),
      el('button', { type: 'submit', text: 'Show' }));
    main.append(form);
    if (!q.get('host')) { main.append(el('p', { class: 'muted', text: 'Type an address, or follow one from the Top page.' })); showMeta(); return; }
    const p = filterParams(q);
    p.set('host', q.get('host'));
    const h = await api('host', p);
    main.append(el('div', { class: 'cards' },
      card('Address', h.address, 'host-address'), card('Pool', h.pool || '—', 'host-pool'),
      card('Country', h.country || '—'), card('AS', h.as_name || '—'),
      card('Sent', human(h.bytes_sent, 'B'), 'host-sent'), card('Received', human(h.bytes_received, 'B'), 'host-received'),
      card('Flows', h.flows.toLocaleString('en'), 'host-flows'),
      card('Seen', h.flows ? fmtTime(h.first_seen) + ' – ' + fmtTime(h.last_seen) : '—')));
    const panel = el('div', { class: 'panel' }, el('h2', { text: 'Volume (bit/s)' }), el('div', { class: 'chart', id: 'chart-host' }));
    main.append(panel);
    chart('host', $('#chart-host'), h.times, [
      { name: 'sent', values: h.sent.map((v) => v * 8 / h.step), stack: false },
      { name: 'received', values: h.received.map((v) => v * 8 / h.step), stack: false }], 'bit/s');
    const peerLink = (v) => '#/host?' + new URLSearchParams(Object.assign(Object.fromEntries(filterParams(q)), { host: v })).toString();
    main.append(el('div', { class: 'panel' }, el('h2', { text: 'Applications' }), table(h.applications, { id: 'host-apps' })),
      el('div', { class: 'panel' }, el('h2', { text: 'Peers' }), table(h.peers, { id: 'host-peers', links: { peer: peerLink } })));
    showMeta(h);
  },

  async exporters(main) {
    const e = await api('exporters');
    const store = e.store;
    main.append(el('div', { class: 'panel' }, el('h2', { text: 'In the store (last hour)' }),
      store.rows.length ? table(store, { id: 'exporters-store', times: ['last_minute'] }) : el('p', { class: 'muted', text: 'No flows in the last hour.' })));
    const coll = Array.isArray(e.collector) ? e.collector : [];
    if (coll.length) {
      const cols = [...new Set(coll.flatMap((x) => Object.keys(x)))];
      main.append(el('div', { class: 'panel' }, el('h2', { text: 'Collector (since start)' }),
        table({ columns: cols, rows: coll.map((x) => cols.map((c) => (x[c] === undefined || x[c] === null ? '' : x[c]))) }, { id: 'exporters-collector' })));
    } else {
      main.append(el('p', { class: 'muted', text: 'No collector in this process (a console-only role), or no exporter seen yet.' }));
    }
    showMeta(e);
  },

  async alerts(main, q) {
    const p = filterParams(q);
    for (const k of ['severity', 'kind']) if (q.get(k)) p.set(k, q.get(k));
    const sel = (name, options) => el('label', {}, name + ' ', el('select', { name, onchange: (ev) => { if (ev.target.value) q.set(name, ev.target.value); else q.delete(name); setHash('alerts', q); } },
      [''].concat(options).map((v) => el('option', { value: v, selected: (q.get(name) || '') === v, text: v || 'any' }))));
    main.append(el('div', { class: 'row' }, sel('severity', ['critical', 'high', 'medium', 'low', 'info']),
      sel('kind', ['policy', 'new_edge', 'dns_tunnel', 'dns_resolver', 'saas'])));
    const a = await api('alerts', p);
    main.append(el('div', { class: 'cards', id: 'alert-counts' }, ['critical', 'high', 'medium', 'low', 'info'].map((s) => card(s, String(a.by_severity[s] || 0), 'sev-' + s))));
    main.append(el('div', { class: 'panel' }, a.rows.length ? table(a, { id: 'alerts-table', times: ['time', 'last_seen'] }) : el('p', { class: 'muted', text: 'No alerts in this range.' })));
    showMeta(a);
  },

  async sql(main, q) {
    const area = el('textarea', { id: 'sql-query', spellcheck: 'false' });
    area.value = q.get('q') || 'SELECT protocol, sum(bytes) AS bytes FROM flows WHERE timestamp > now() - 3600 GROUP BY protocol ORDER BY bytes DESC LIMIT 20';
    const out = el('div', { id: 'sql-result' });
    const run = async (format) => {
      showError(null);
      const body = JSON.stringify({ query: area.value, format });
      const init = { method: 'POST', headers: { 'Content-Type': 'application/json' }, body };
      if (format === 'csv') {
        const resp = await api('sql', null, Object.assign(init, { raw: true }));
        const blob = await resp.blob();
        const a = el('a', { href: URL.createObjectURL(blob), download: 'flowlens.csv' });
        document.body.append(a); a.click(); a.remove();
        return;
      }
      main.dataset.state = 'loading';
      const r = await api('sql', null, init);
      out.replaceChildren(r.truncated ? el('p', { class: 'muted', id: 'sql-truncated', text: 'Showing the first ' + r.max_rows + ' rows (the row limit).' }) : '',
        el('div', { class: 'scroll' }, table(r, { id: 'sql-table' })));
      showMeta({ elapsed_ms: r.elapsed_ms }, r.rows.length + ' rows');
      main.dataset.state = 'ready';
    };
    const guard = (format) => () => run(format).catch((e) => { showError(e); main.dataset.state = 'ready'; });
    main.append(el('div', { class: 'panel' }, area,
      el('div', { class: 'row' }, el('button', { type: 'button', id: 'sql-run', text: 'Run', onclick: guard('json') }),
        el('button', { type: 'button', class: 'secondary', id: 'sql-csv', text: 'Download CSV', onclick: guard('csv') }),
        el('span', { class: 'muted', text: 'Read-only: one SELECT, WITH, SHOW, DESCRIBE, EXPLAIN or EXISTS; rows and time are limited.' }))), out);
    area.addEventListener('keydown', (e) => { if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) guard('json')(); });
    showMeta();
  },
};

// ---- routing ----------------------------------------------------------------

let seq = 0;
async function render() {
  const { page, q } = parseHash();
  const fn = pages[page] || pages.overview;
  writeForm(q);
  for (const a of document.querySelectorAll('#nav a')) {
    a.classList.toggle('active', a.dataset.page === page);
    a.href = '#/' + a.dataset.page + (filterParams(q).toString() ? '?' + filterParams(q).toString() : '');
  }
  $('#filters').hidden = page === 'sql' || page === 'exporters';
  const main = $('#main');
  const my = ++seq;
  const fresh = el('main', { id: 'main', dataset: { state: 'loading', page } });
  main.replaceWith(fresh);
  Object.keys(charts).forEach((k) => { charts[k].dispose(); delete charts[k]; });
  showError(null);
  try {
    await fn(fresh, q);
  } catch (e) {
    if (my === seq) showError(e);
  }
  if (my === seq) fresh.dataset.state = 'ready';
  loadOptions(q);
}

// Suggestions for the filter bar, refreshed when the range changes.
let optionsRange = null;
async function loadOptions(q) {
  const p = new URLSearchParams();
  for (const k of ['range', 'from', 'to']) if (filterParams(q).get(k)) p.set(k, filterParams(q).get(k));
  const range = p.toString();
  if (optionsRange === range) return;
  optionsRange = range;
  try {
    const o = await api('options', p);
    const fill = (id, list) => $(id).replaceChildren(...list.map((v) => el('option', { value: v })));
    fill('#dl-exporters', o.exporters);
    fill('#dl-pools', o.pools);
    fill('#dl-apps', o.applications);
  } catch (_) { optionsRange = null; }
}

document.addEventListener('DOMContentLoaded', () => {
  const form = $('#filters');
  form.addEventListener('submit', (e) => { e.preventDefault(); readForm(); });
  // A preset replaces an absolute range.
  form.elements.range.addEventListener('change', () => {
    if (form.elements.range.value !== 'custom') form.elements.from.value = form.elements.to.value = '';
    readForm();
  });
  $('#clear').addEventListener('click', () => {
    const { page, q } = parseHash();
    for (const k of FILTERS) q.delete(k);
    setHash(page, q);
  });
  window.addEventListener('hashchange', render);
  render();
});
