// app.js - the operator dashboard: hash routes over vendd's HTTP API, kept live by the
// event stream. Server data only ever reaches the page through textContent (h() below).

const $ = (id) => document.getElementById(id);
const S = { mode: null, csrf: null, es: null, view: null, token: 0 };
const STATUSES = ['PENDING', 'PAID', 'DISPENSING', 'COMPLETED', 'FAILED', 'REFUNDED', 'EXPIRED',
  'CANCELLED'];

// ---- DOM ------------------------------------------------------------------------------------

// h('a', {href: '#/x', class: 'c', onclick: fn}, 'text', node, [more]) - never parses HTML.
function h(tag, props, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v == null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const kid of kids.flat(4)) {
    if (kid != null && kid !== false) el.append(kid instanceof Node ? kid : String(kid));
  }
  return el;
}

const srOnly = (text) => h('span', { class: 'sr-only' }, text);
const dash = (v) => (v == null || v === '' ? '—' : String(v));
const rp = new Intl.NumberFormat('id-ID', { style: 'currency', currency: 'IDR', maximumFractionDigits: 0 });
const money = (n) => (n == null ? '—' : rp.format(n));

function when(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  const pad = (n) => String(n).padStart(2, '0');
  const text = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  return h('time', { datetime: iso }, text);
}

function ago(iso) {
  if (!iso) return 'never';
  const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  const text = s < 60 ? `${s} s ago` : s < 3600 ? `${Math.floor(s / 60)} min ago`
    : s < 86400 ? `${Math.floor(s / 3600)} h ago` : `${Math.floor(s / 86400)} days ago`;
  return h('time', { datetime: iso, title: iso }, text);
}

const badge = (text, kind) => h('span', { class: `badge ${kind || String(text).toLowerCase()}` }, text);

// A table: cols are header labels (a leading '#' marks a number column), rows are
// {key, cls, cells}; key names the row for live updates (data-key).
function table(caption, cols, rows, empty) {
  if (!rows.length) return h('p', { class: 'empty' }, empty || 'Nothing to show.');
  const num = cols.map((c) => c.startsWith('#'));
  return h('div', { class: 'scroll' }, h('table', {},
    h('caption', {}, caption),
    h('thead', {}, h('tr', {}, cols.map((c, i) => h('th', { scope: 'col', class: num[i] ? 'num' : null },
      num[i] ? c.slice(1) : c)))),
    h('tbody', {}, rows.map((r) => h('tr', { 'data-key': r.key, class: r.cls },
      r.cells.map((c, i) => (i === 0 ? h('th', { scope: 'row', class: num[0] ? 'num' : null }, c) : h('td', { class: num[i] ? 'num' : null }, c))))))));
}

function dl(pairs) {
  return h('dl', { class: 'facts' }, pairs.map(([k, v]) => [h('dt', {}, k), h('dd', {}, v ?? '—')]));
}

function field(label, input, hint) {
  const id = input.id || `f${Math.random().toString(36).slice(2, 9)}`;
  input.id = id;
  const hid = hint ? `${id}-hint` : null;
  if (hid) input.setAttribute('aria-describedby', hid);
  return h('p', { class: 'field' }, h('label', { for: id }, label), input, hint ? h('span', { id: hid, class: 'hint' }, hint) : null);
}

function announce(text) {
  const a = $('announce');
  a.textContent = '';
  setTimeout(() => { a.textContent = text; }, 50);
}

// Run fn (which rebuilds part of the page) and put the focus back on the element that had it,
// found again by its data-fk.
function keepFocus(fn) {
  const fk = document.activeElement?.dataset?.fk;
  fn();
  if (fk) document.querySelector(`[data-fk="${CSS.escape(fk)}"]`)?.focus();
}

function debounce(fn, ms) {
  let t = null;
  return () => { clearTimeout(t); t = setTimeout(fn, ms); };
}

// ---- API ------------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, body) {
    super(body?.error?.message || `HTTP ${status}`);
    this.status = status;
    this.code = body?.error?.code || 'HTTP';
    this.body = body;
  }
}

async function api(method, path, body) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET' && S.csrf) headers['X-CSRF-Token'] = S.csrf;
  const res = await fetch(path, {
    method, headers, credentials: 'same-origin', body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = res.status === 204 ? '' : await res.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch { json = null; }
  if (res.status === 401 && !path.startsWith('/api/session')) {
    signedOut('Your session has ended: sign in again.');
  }
  if (!res.ok) throw new ApiError(res.status, json);
  return json;
}

// Every page of a list (docs/HTTP-API.md "Lists"), at most max pages.
async function all(path, key, max = 20) {
  const items = [];
  let cursor = null;
  for (let i = 0; i < max; i++) {
    const sep = path.includes('?') ? '&' : '?';
    const page = await api('GET', `${path}${sep}limit=500${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
    items.push(...page[key]);
    cursor = page.next_cursor;
    if (!cursor) break;
  }
  return items;
}

const errText = (e) => (e instanceof ApiError ? `${e.message} (${e.code})` : `The server cannot be reached (${e.message}).`);

// A message under a form: role=alert for errors (announced at once), status otherwise.
function note(el, text, bad) {
  el.className = bad ? 'msg bad' : 'msg ok';
  el.setAttribute('role', bad ? 'alert' : 'status');
  el.replaceChildren(...[text].flat());
}

// ---- session and event stream -----------------------------------------------------------------

async function loadSession() {
  const s = await api('GET', '/api/session');
  S.mode = s.mode;
  S.csrf = s.csrf;
  return s.signed_in;
}

function signedOut(why) {
  S.csrf = null;
  if (S.es) S.es.close();
  S.es = null;
  $('nav').hidden = true;
  $('signout').hidden = true;
  $('live').textContent = '';
  showSignIn(why);
}

function setLive(text) {
  if ($('live').textContent !== text) $('live').textContent = text;
}

function startEvents() {
  if (S.es) return;
  const es = new EventSource('/api/events');
  S.es = es;
  es.onopen = () => setLive('Live');
  es.onerror = () => {
    setLive('Reconnecting…');
    if (es.readyState === EventSource.CLOSED) {
      // Refused (signed out, too many streams): EventSource gives up; ask again later.
      S.es = null;
      setTimeout(async () => {
        try {
          if (await loadSession()) startEvents();
          else signedOut('Your session has ended: sign in again.');
        } catch { startEvents(); }
      }, 5000);
    }
  };
  for (const type of ['order', 'unit', 'machine', 'stock', 'alert', 'refund', 'reset']) {
    es.addEventListener(type, (e) => {
      let data = {};
      try { data = JSON.parse(e.data); } catch { return; }
      S.view?.onEvent?.(type, data);
    });
  }
}

function showSignIn(why) {
  S.view?.stop?.();
  S.view = null;
  S.token++;
  document.title = 'Sign in – vendd';
  $('title').textContent = 'Sign in';
  if (S.mode === 'development') {
    $('view').replaceChildren(h('p', { class: 'msg bad', role: 'alert' },
      'Development mode (no API_TOKEN): the dashboard answers only on the machine vendd runs on.'));
    return;
  }
  const token = h('input', { type: 'password', name: 'token', autocomplete: 'current-password', required: true, maxlength: '255' });
  const msg = h('p', { class: why ? 'msg bad' : 'msg', role: why ? 'alert' : 'status' }, why || '');
  const form = h('form', { class: 'card narrow' },
    field('Operator token', token, 'The API_TOKEN of this vendd.'),
    h('p', {}, h('button', { type: 'submit' }, 'Sign in')), msg);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    note(msg, 'Signing in…');
    try {
      const r = await api('POST', '/api/session', { token: token.value });
      S.csrf = r.csrf;
      token.value = '';
      await enter();
      $('title').focus();
    } catch (e) {
      const text = e.status === 401 ? 'Wrong token: check it and try again.'
        : e.status === 429 ? 'Too many attempts: wait a minute and try again.' : errText(e);
      note(msg, text, true);
      token.focus();
    }
  });
  $('view').replaceChildren(form);
  token.focus();
}

async function enter() {
  $('nav').hidden = false;
  $('signout').hidden = S.mode !== 'token';
  startEvents();
  await route();
}

// ---- views ----------------------------------------------------------------------------------
// A view is async (params, put) and returns {onEvent}; put(...nodes) replaces the page body.

function machineLink(id) {
  return id ? h('a', { href: `#/machine/${encodeURIComponent(id)}`, 'data-fk': `m:${id}` }, id) : '—';
}
function orderLink(id) {
  return id ? h('a', { href: `#/order/${encodeURIComponent(id)}`, 'data-fk': `o:${id}` }, id) : '—';
}

async function fleetView(_p, put) {
  const box = h('div');
  const load = async () => {
    const [machines, alerts] = await Promise.all([all('/api/machines', 'machines'), all('/api/alerts?open=true', 'items', 4)]);
    const open = {};
    for (const a of alerts) if (a.machine_id) open[a.machine_id] = (open[a.machine_id] || 0) + 1;
    const off = machines.filter((m) => m.status !== 'ONLINE');
    machines.sort((a, b) => (a.status === 'ONLINE') - (b.status === 'ONLINE') || a.id.localeCompare(b.id));
    const rows = machines.map((m) => ({
      key: m.id,
      cls: m.status === 'ONLINE' ? null : 'off',
      cells: [
        h('span', {}, machineLink(m.id), m.name && m.name !== m.id ? h('span', { class: 'sub' }, m.name) : null),
        badge(m.status === 'ONLINE' ? 'Online' : m.status === 'OFFLINE' ? 'Offline' : m.status, m.status.toLowerCase()),
        ago(m.last_seen),
        m.temperature == null ? '—' : `${m.temperature} °C`,
        m.door === 'OPEN' ? badge('Open', 'warn') : dash(m.door && 'Closed'),
        dash(m.fw),
        open[m.id] ? h('a', { href: `#/alerts?machine=${encodeURIComponent(m.id)}`, 'data-fk': `a:${m.id}` },
          `${open[m.id]}`, srOnly(` open alerts for ${m.id}`)) : '0',
      ],
    }));
    keepFocus(() => box.replaceChildren(
      h('p', { class: 'summary' }, `${machines.length} machines: ${machines.length - off.length} online, `,
        off.length ? h('strong', { class: 'offtext' }, `${off.length} offline`) : '0 offline',
        `; ${alerts.length} open alerts.`),
      table('Machines, offline first', ['Machine', 'Status', 'Last seen', '#Temperature', 'Door', 'Firmware', '#Open alerts'], rows,
        'No machines are registered yet.')));
  };
  await load();
  put(box);
  const again = debounce(() => load().catch(() => {}), 250);
  // Telemetry (temperature, door, last seen) makes no event: read it again now and then.
  const tick = setInterval(again, 60000);
  return { onEvent: (t) => { if (t === 'machine' || t === 'alert' || t === 'reset') again(); }, stop: () => clearInterval(tick) };
}

async function machineView({ id }, put) {
  const base = `/api/machines/${encodeURIComponent(id)}`;
  let m = await api('GET', base);
  const head = h('div');
  const slots = h('div');
  const edit = h('div');
  const logs = h('div');
  let editing = null; // the slot editor: {n, msg, seen}

  const drawHead = () => {
    head.replaceChildren(dl([
      ['Name', m.name], ['Location', dash(m.location)],
      ['Status', badge(m.status === 'ONLINE' ? 'Online' : m.status, m.status.toLowerCase())],
      ['Last seen', ago(m.last_seen)], ['Temperature', m.temperature == null ? '—' : `${m.temperature} °C`],
      ['Door', dash(m.door)], ['Firmware', dash(m.fw)], ['Signal', m.rssi == null ? '—' : `${m.rssi} dBm`],
    ]));
  };
  const drawSlots = () => keepFocus(() => slots.replaceChildren(table(`Slots of ${id}`,
    ['Slot', 'Product', '#Price', '#Stock (counted)', 'Sensor level', 'Inspection', '#Version', 'Action'],
    m.slots.map((s) => ({
      key: String(s.slot_number),
      cls: s.needs_inspection ? 'warnrow' : null,
      cells: [String(s.slot_number), dash(s.product_name), money(s.price),
        h('span', { class: s.current_stock === 0 ? 'offtext' : null }, `${s.current_stock} of ${s.capacity}`),
        dash(s.sensor_level), s.needs_inspection ? badge('Needs inspection', 'warn') : 'OK', String(s.version),
        h('button', { type: 'button', 'data-fk': `e:${s.slot_number}`, onclick: () => openEdit(s.slot_number) },
          'Edit', srOnly(` slot ${s.slot_number}`))],
    })), 'This machine has no slots yet (PUT /api/machines/{id}/slots/{slot} creates them).')));

  // The forms send the version the operator saw; a 409 shows what the server has now and
  // makes that the version of the next try, so nothing is overwritten unseen.
  const openEdit = (n) => {
    const seen = { ...m.slots.find((s) => s.slot_number === n) };
    const shown = h('p', { class: 'loaded' });
    const msg = h('p', { class: 'msg', role: 'status' });
    const showSeen = () => shown.replaceChildren(`Values you are working from: stock ${seen.current_stock} of ${seen.capacity}, price ${money(seen.price)}, ` +
      `${seen.needs_inspection ? 'needs inspection' : 'no inspection needed'}, version ${seen.version}.`);
    const send = async (form, body, done) => {
      const button = form.querySelector('button');
      button.disabled = true;
      try {
        const s = await api('PUT', `${base}/slots/${n}`, { ...body, version: seen.version });
        Object.assign(seen, s);
        m.slots = m.slots.map((x) => (x.slot_number === n ? s : x));
        showSeen();
        drawSlots();
        note(msg, `Saved ${done}: slot ${n} now has ${s.current_stock} of ${s.capacity} at ${money(s.price)} (version ${s.version}).`);
        form.reset();
      } catch (e) {
        if (e.code === 'CONFLICT') {
          const cur = (await api('GET', `/api/stock/${encodeURIComponent(id)}`)).slots.find((x) => x.slot_number === n);
          if (cur) {
            Object.assign(seen, cur);
            m.slots = m.slots.map((x) => (x.slot_number === n ? cur : x));
            drawSlots();
          }
          showSeen();
          note(msg, [h('strong', {}, 'Not saved: '), `slot ${n} changed since you loaded it. `,
            h('span', { class: 'current' }, cur ? `Current values: stock ${cur.current_stock} of ${cur.capacity}, price ${money(cur.price)}, ` +
              `${cur.needs_inspection ? 'needs inspection' : 'no inspection needed'}, version ${cur.version}.` : 'The slot is gone.'),
            ' Check them, then submit again if your change still holds.'], true);
        } else note(msg, `Not saved: ${errText(e)}`, true);
      } finally { button.disabled = false; }
    };
    const num = (min, max) => h('input', { type: 'number', inputmode: 'numeric', min: String(min), max: max == null ? null : String(max), required: true });
    const added = num(1, 1000);
    const counted = num(0, 1000);
    const price = num(0, 100000000);
    const fRestock = h('form', { class: 'card' }, h('h3', {}, 'Restock'), field('Units added', added, 'Added to the count you see above.'),
      h('button', { type: 'submit' }, 'Restock'));
    fRestock.addEventListener('submit', (ev) => { ev.preventDefault(); send(fRestock, { current_stock: seen.current_stock + Number(added.value) }, 'the restock'); });
    const fAudit = h('form', { class: 'card' }, h('h3', {}, 'Audit'), field('Counted stock', counted, 'What you counted in the slot.'),
      h('button', { type: 'submit' }, 'Save count'));
    fAudit.addEventListener('submit', (ev) => { ev.preventDefault(); send(fAudit, { current_stock: Number(counted.value) }, 'the count'); });
    const fPrice = h('form', { class: 'card' }, h('h3', {}, 'Price'), field('New price (rupiah)', price, "The product's price, on every slot that sells it."),
      h('button', { type: 'submit' }, 'Change price'));
    fPrice.addEventListener('submit', (ev) => { ev.preventDefault(); send(fPrice, { price: Number(price.value) }, 'the price'); });
    const fInspect = h('form', { class: 'card' }, h('h3', {}, 'Inspection'), h('p', {}, 'After looking at the slot and fixing it:'),
      h('button', { type: 'submit' }, 'Mark inspected'));
    fInspect.addEventListener('submit', (ev) => { ev.preventDefault(); send(fInspect, { needs_inspection: false }, 'the inspection'); });
    const title = h('h2', { id: 'edit-h', tabindex: '-1' }, `Slot ${n}: ${seen.product_name || 'no product'}`);
    const panel = h('section', { class: 'edit', 'aria-labelledby': 'edit-h' }, title, shown,
      h('div', { class: 'forms' }, fRestock, fAudit, fPrice, seen.needs_inspection ? fInspect : null), msg,
      h('p', {}, h('button', { type: 'button', class: 'link', onclick: () => { editing = null; edit.replaceChildren(); $('main').querySelector(`[data-fk="e:${n}"]`)?.focus(); } }, 'Close the slot editor')));
    showSeen();
    editing = { n, msg, seen };
    edit.replaceChildren(panel);
    title.focus();
  };

  const cfg = m.config || { motorTimeout: 3000, dropSensorDelay: 50, telemetryInterval: 60000 };
  const cin = (v, min, max) => h('input', { type: 'number', inputmode: 'numeric', min: String(min), max: String(max), value: String(v), required: true });
  const mt = cin(cfg.motorTimeout, 100, 60000);
  const ds = cin(cfg.dropSensorDelay, 0, 5000);
  const ti = cin(cfg.telemetryInterval, 1000, 86400000);
  const cmsg = h('p', { class: 'msg', role: 'status' });
  const fcfg = h('form', { class: 'card', 'aria-labelledby': 'cfg-h' }, h('h2', { id: 'cfg-h' }, 'Configuration'),
    h('p', {}, 'Stored and sent retained on the machine\'s config topic: it gets it now or when it next connects.'),
    h('div', { class: 'forms' }, field('Motor timeout (ms)', mt, '100 to 60000'), field('Drop sensor delay (ms)', ds, '0 to 5000'),
      field('Telemetry interval (ms)', ti, '1000 to 86400000')),
    h('button', { type: 'submit' }, 'Push configuration'), cmsg);
  fcfg.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    try {
      const r = await api('PUT', `${base}/config`, { motorTimeout: Number(mt.value), dropSensorDelay: Number(ds.value), telemetryInterval: Number(ti.value) });
      note(cmsg, `Pushed to ${r.topic}.`);
    } catch (e) { note(cmsg, `Not pushed: ${errText(e)}`, true); }
  });

  const drawLogs = async () => {
    const r = await api('GET', `/api/dispense/logs/${encodeURIComponent(id)}?limit=20`);
    keepFocus(() => logs.replaceChildren(table(`The last ${r.logs.length} dispenses of ${id}`,
      ['Order', '#Unit', '#Slot', 'Status', 'Sent', 'Completed', 'Error'],
      r.logs.map((l) => ({ key: `${l.order_id}/${l.unit}`, cells: [orderLink(l.order_id), String(l.unit), String(l.slot_number),
        badge(l.status), when(l.command_sent_at), when(l.completed_at), dash(l.error_message)] })), 'No dispenses yet.')));
  };

  drawHead();
  drawSlots();
  await drawLogs();
  put(head, h('section', { 'aria-labelledby': 'slots-h' }, h('h2', { id: 'slots-h' }, 'Slots'), slots, edit),
    h('section', { 'aria-labelledby': 'logs-h' }, h('h2', { id: 'logs-h' }, 'Dispenses'), logs), fcfg);

  const reload = debounce(async () => {
    try {
      m = await api('GET', base);
      drawHead();
      drawSlots();
    } catch { /* shown on the next change */ }
  }, 250);
  const relogs = debounce(() => drawLogs().catch(() => {}), 250);
  return {
    onEvent: (t, d) => {
      if (t === 'reset') { reload(); relogs(); return; }
      if (d.machine_id !== id) return;
      if (t === 'machine' || t === 'stock') reload();
      // Another's change (not the echo of our own save): say so; the forms keep their version.
      if (t === 'stock' && editing && d.slot === editing.n && d.current_stock !== editing.seen.current_stock) {
        note(editing.msg, `Slot ${d.slot} changed meanwhile: the count is now ${d.current_stock}. Your next change is checked against what you loaded.`);
      }
      if (t === 'unit') relogs();
    },
  };
}

function query(p) {
  return new URLSearchParams(p.q || '');
}

async function ordersView(p, put) {
  const q = query(p);
  const status = q.get('status') || '';
  const machine = q.get('machine') || '';
  const sel = h('select', { name: 'status' }, h('option', { value: '' }, 'Any status'),
    STATUSES.map((s) => h('option', { value: s, selected: s === status }, s)));
  const mac = h('input', { type: 'text', name: 'machine', value: machine, pattern: '[A-Za-z0-9_\\-]{1,32}', maxlength: '32' });
  const filter = h('form', { class: 'filters', role: 'search', 'aria-label': 'Filter the orders' },
    field('Status', sel), field('Machine', mac, 'Empty for every machine.'), h('p', { class: 'field' }, h('button', { type: 'submit' }, 'Filter')));
  filter.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const nq = new URLSearchParams();
    if (sel.value) nq.set('status', sel.value);
    if (mac.value.trim()) nq.set('machine', mac.value.trim());
    location.hash = `#/orders${nq.toString() ? `?${nq}` : ''}`;
  });
  const listQ = new URLSearchParams();
  if (status) listQ.set('status', status);
  if (machine) listQ.set('machine_id', machine);
  const list = h('div');
  const more = h('p');
  let orders = [];
  let cursor = null;
  const row = (o) => ({ key: o.id, cls: `st-${o.status.toLowerCase()}`, cells: [orderLink(o.id), machineLink(o.machine_id),
    h('span', { class: 'status' }, badge(o.status)), money(o.total_amount), dash(o.payment_method), when(o.created_at), when(o.updated_at)] });
  const draw = () => keepFocus(() => {
    list.replaceChildren(table('Orders, newest first', ['Order', 'Machine', 'Status', '#Total', 'Payment', 'Created', 'Updated'],
      orders.map(row), 'No orders match.'));
    more.replaceChildren(cursor ? h('button', { type: 'button', 'data-fk': 'more', onclick: loadMore }, 'Show more orders') : '');
  });
  const load = async () => {
    const r = await api('GET', `/api/orders?${listQ}&limit=50`);
    orders = r.items;
    cursor = r.next_cursor;
    draw();
  };
  async function loadMore() {
    const r = await api('GET', `/api/orders?${listQ}&limit=50&cursor=${encodeURIComponent(cursor)}`);
    orders.push(...r.items);
    cursor = r.next_cursor;
    draw();
  }
  await load();
  const feed = h('ol', { class: 'feed' });
  put(filter, list, more, h('section', { 'aria-labelledby': 'feed-h' }, h('h2', { id: 'feed-h' }, 'Dispenses as they happen'),
    h('p', { class: 'hint' }, 'Each unit as the machines report it, since this page opened.'),
    h('div', { role: 'log', 'aria-labelledby': 'feed-h' }, feed)));
  const reload = debounce(() => load().catch(() => {}), 300);
  return {
    onEvent: (t, d) => {
      if (t === 'reset') { reload(); return; }
      if (t === 'unit') {
        feed.prepend(h('li', {}, when(new Date().toISOString()), ` ${d.machine_id} slot ${d.slot}: order `, orderLink(d.order_id),
          ` unit ${d.unit} `, badge(d.status), d.error ? ` ${d.error}` : '', d.late_result ? ' (late result)' : ''));
        while (feed.children.length > 20) feed.lastChild.remove();
        return;
      }
      if (t !== 'order') return;
      const o = orders.find((x) => x.id === d.order_id);
      if (o) {
        o.status = d.status;
        o.updated_at = new Date().toISOString();
        const tr = list.querySelector(`tr[data-key="${CSS.escape(d.order_id)}"]`);
        if (tr) {
          tr.className = `st-${d.status.toLowerCase()} changed`;
          tr.querySelector('.status').replaceChildren(badge(d.status));
        }
      } else if ((!status || status === d.status) && (!machine || machine === d.machine_id)) reload();
    },
  };
}

async function orderView({ id }, put) {
  const box = h('div');
  const draw = async () => {
    const o = await api('GET', `/api/orders/${encodeURIComponent(id)}`);
    const r = o.refund;
    keepFocus(() => box.replaceChildren(
      dl([['Status', h('span', { id: 'order-status' }, badge(o.status))], ['Machine', machineLink(o.machine_id)],
        ['Origin', o.origin], ['Payment', dash(o.payment_method)], ['Total', money(o.total_amount)],
        ['Failure', dash(o.failure_reason)], ['Created', when(o.created_at)], ['Paid', when(o.paid_at)],
        ['Dispensed', when(o.dispensed_at)], ['Expires', when(o.expires_at)], ['Updated', when(o.updated_at)]]),
      h('h2', {}, 'Items'),
      table('Items', ['#Position', '#Slot', 'Product', '#Quantity', '#Unit price', '#Total'],
        (o.items || []).map((i) => ({ key: String(i.position), cells: [String(i.position), String(i.slot), dash(i.product_name), String(i.quantity), money(i.unit_price), money(i.total)] }))),
      h('h2', {}, 'Payment events'),
      table('Payment notifications, oldest first', ['Received', 'Transaction status', 'Code', 'Signature', 'Outcome'],
        (o.payment_events || []).map((e, i) => ({ key: String(i), cells: [when(e.received_at), dash(e.transaction_status), dash(e.status_code),
          e.signature_ok ? 'valid' : badge('invalid', 'bad'), dash(e.outcome)] })), 'No payment notification yet.'),
      h('h2', {}, 'Units and results'),
      table('Dispensed units', ['#Unit', '#Slot', 'Status', 'Sent', 'Completed', '#Duration (ms)', 'Dropped', 'Error'],
        (o.units || []).map((u) => ({ key: String(u.unit), cells: [String(u.unit), String(u.slot_number), badge(u.status), when(u.command_sent_at),
          when(u.completed_at), dash(u.duration_ms), u.drop_detected == null ? '—' : u.drop_detected ? 'yes' : 'no',
          [dash(u.error_message), u.late_result ? ' (late result)' : '']] })), 'No unit sent yet.'),
      h('h2', {}, 'Refund'),
      r ? dl([['Refund', h('a', { href: '#/refunds?status=all' }, `#${r.id}`)], ['Status', badge(r.status)], ['Amount', money(r.amount)],
        ['Reason', dash(r.reason)], ['Attempts', String(r.attempts)], ['Last error', dash(r.last_error)], ['Note', dash(r.note)],
        ['Done', when(r.done_at)], ['Queued', when(r.created_at)]]) : h('p', {}, 'No refund.')));
  };
  await draw();
  put(box);
  const again = debounce(() => draw().catch(() => {}), 250);
  return { onEvent: (t, d) => { if (t === 'reset' || d.order_id === id) again(); } };
}

async function alertsView(p, put) {
  const q = query(p);
  const resolved = q.get('resolved') === '1';
  const machine = q.get('machine') || '';
  const msg = h('p', { class: 'msg', role: 'status' });
  const list = h('div');
  const mq = machine ? `&machine_id=${encodeURIComponent(machine)}` : '';
  const resolve = async (a, button) => {
    button.disabled = true;
    try {
      await api('POST', `/api/alerts/${a.id}/resolve`);
      note(msg, `Alert ${a.id} (${a.kind}) resolved.`);
      await load();
      $('title').focus();
    } catch (e) {
      note(msg, `Alert ${a.id} not resolved: ${errText(e)}`, true);
      button.disabled = false;
    }
  };
  const load = async () => {
    const items = await all(`/api/alerts?open=${resolved ? 'false' : 'true'}${mq}`, 'items', 4);
    keepFocus(() => list.replaceChildren(table(resolved ? 'Resolved alerts, newest first' : 'Open alerts, newest first',
      ['Raised', 'Machine', 'Kind', 'Message', 'Order', '#Slot', resolved ? 'Resolved' : 'Action'],
      items.map((a) => ({ key: String(a.id), cells: [when(a.created_at), machineLink(a.machine_id), badge(a.kind, 'kind'), a.message,
        orderLink(a.order_id), dash(a.slot_number), resolved ? when(a.resolved_at)
          : h('button', { type: 'button', 'data-fk': `r:${a.id}`, onclick: (ev) => resolve(a, ev.currentTarget) }, 'Resolve', srOnly(` alert ${a.id}`))] })),
      resolved ? 'No resolved alerts.' : 'No open alerts.')));
  };
  await load();
  const link = (r, text) => h('a', { href: `#/alerts${r ? '?resolved=1' : ''}`, 'aria-current': r === resolved ? 'page' : null }, text);
  put(h('nav', { class: 'tabs', 'aria-label': 'Which alerts' }, link(false, 'Open'), link(true, 'Resolved')),
    machine ? h('p', {}, `Alerts of ${machine} only. `, h('a', { href: '#/alerts' }, 'Every machine')) : null, msg, list);
  const again = debounce(() => load().catch(() => {}), 250);
  return { onEvent: (t) => { if (t === 'alert' || t === 'reset') again(); } };
}

async function refundsView(p, put) {
  const everything = query(p).get('status') === 'all';
  const msg = h('p', { class: 'msg', role: 'status' });
  const list = h('div');
  const doneForm = (r) => {
    const input = h('input', { type: 'text', name: 'note', required: true, maxlength: '200', 'data-fk': `n:${r.id}` });
    const f = h('form', { class: 'inline' }, field(`How refund ${r.id} was paid back`, input),
      h('button', { type: 'submit', 'data-fk': `d:${r.id}` }, 'Mark done', srOnly(` refund ${r.id}`)));
    f.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      try {
        await api('POST', `/api/refunds/${r.id}/done`, { note: input.value });
        note(msg, `Refund ${r.id} of ${money(r.amount)} marked done.`);
        await load();
        $('title').focus();
      } catch (e) { note(msg, `Refund ${r.id} not marked: ${errText(e)}`, true); }
    });
    return f;
  };
  const load = async () => {
    const refunds = await all(`/api/refunds${everything ? '?status=all' : ''}`, 'refunds', 4);
    keepFocus(() => list.replaceChildren(table(everything ? 'Every refund, newest first' : "The operator's queue",
      ['#Refund', 'Order', 'Machine', '#Amount', 'Reason', 'Status', '#Attempts', 'Last error', 'Queued', 'Action'],
      refunds.map((r) => ({ key: String(r.id), cells: [String(r.id), orderLink(r.order_id), machineLink(r.machine_id), money(r.amount), dash(r.reason),
        badge(r.status), String(r.attempts), dash(r.last_error), when(r.created_at),
        r.status === 'OPERATOR' || r.status === 'QUEUED' ? doneForm(r) : r.status === 'DONE' ? dash(r.note) : '—'] })),
      'No refund waits for a person.')));
  };
  await load();
  const link = (all2, text) => h('a', { href: `#/refunds${all2 ? '?status=all' : ''}`, 'aria-current': all2 === everything ? 'page' : null }, text);
  put(h('nav', { class: 'tabs', 'aria-label': 'Which refunds' }, link(false, 'To do'), link(true, 'All')),
    h('p', { class: 'hint' }, 'A refund in OPERATOR status needs a person: pay it back, then say how. QUEUED ones go out by themselves; SENT ones wait for Midtrans.'),
    msg, list);
  const again = debounce(() => load().catch(() => {}), 250);
  return { onEvent: (t) => { if (t === 'refund' || t === 'reset') again(); } };
}

async function salesView(p, put) {
  const q = query(p);
  const day = (d) => d.toISOString().slice(0, 10);
  const to = q.get('to') || day(new Date());
  const from = q.get('from') || day(new Date(Date.now() - 6 * 86400000));
  const machine = q.get('machine') || '';
  const fi = h('input', { type: 'date', name: 'from', value: from, required: true });
  const ti = h('input', { type: 'date', name: 'to', value: to, required: true });
  const mi = h('input', { type: 'text', name: 'machine', value: machine, pattern: '[A-Za-z0-9_\\-]{1,32}', maxlength: '32' });
  const form = h('form', { class: 'filters', role: 'search', 'aria-label': 'Sales period' },
    field('From (UTC day)', fi), field('To (UTC day)', ti), field('Machine', mi, 'Empty for every machine.'),
    h('p', { class: 'field' }, h('button', { type: 'submit' }, 'Show sales')));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const nq = new URLSearchParams({ from: fi.value, to: ti.value });
    if (mi.value.trim()) nq.set('machine', mi.value.trim());
    location.hash = `#/sales?${nq}`;
  });
  const sq = new URLSearchParams({ from, to });
  if (machine) sq.set('machine_id', machine);
  let out;
  try {
    const r = await api('GET', `/api/sales?${sq}`);
    const units = r.rows.reduce((n, x) => n + x.units, 0);
    const revenue = r.rows.reduce((n, x) => n + x.revenue, 0);
    out = [h('p', { class: 'summary' }, `${r.from} to ${r.to}: ${units} units sold, ${money(revenue)}.`),
      table('Units dropped per day (UTC), machine and product', ['Day', 'Machine', 'Product', '#Units', '#Revenue'],
        r.rows.map((x) => ({ key: `${x.day}/${x.machine_id}/${x.product_name}`, cells: [x.day, machineLink(x.machine_id), x.product_name, String(x.units), money(x.revenue)] })),
        'Nothing sold in this period.')];
  } catch (e) {
    out = h('p', { class: 'msg bad', role: 'alert' }, errText(e));
  }
  put(form, out);
  return {};
}

// ---- router ---------------------------------------------------------------------------------

const ROUTES = [
  [/^\/(fleet)?$/, 'Fleet', fleetView, null, 'fleet'],
  [/^\/machine\/([^/]+)$/, 'Machine', machineView, 'id', 'fleet'],
  [/^\/orders$/, 'Orders', ordersView, null, 'orders'],
  [/^\/order\/([^/]+)$/, 'Order', orderView, 'id', 'orders'],
  [/^\/alerts$/, 'Alerts', alertsView, null, 'alerts'],
  [/^\/refunds$/, 'Refunds', refundsView, null, 'refunds'],
  [/^\/sales$/, 'Sales', salesView, null, 'sales'],
];

async function route() {
  const hash = location.hash.startsWith('#/') ? location.hash.slice(1) : '/';
  const [path, q] = hash.split('?');
  const token = ++S.token;
  let found = null;
  for (const [re, name, fn, param, nav] of ROUTES) {
    const m = re.exec(path);
    if (m) { found = { name, fn, nav, params: { q, ...(param ? { [param]: decodeURIComponent(m[1]) } : {}) } }; break; }
  }
  for (const a of $('nav').querySelectorAll('a')) {
    if (found && a.getAttribute('href') === `#/${found.nav}`) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  S.view?.stop?.();
  S.view = null;
  const title = found ? (found.params.id ? `${found.name} ${found.params.id}` : found.name) : 'Not found';
  $('title').textContent = title;
  document.title = `${title} – vendd`;
  $('view').replaceChildren(h('p', { class: 'loading' }, 'Loading…'));
  if (!found) {
    $('view').replaceChildren(h('p', {}, 'No such page. ', h('a', { href: '#/fleet' }, 'Go to the fleet')));
    return;
  }
  try {
    const put = (...nodes) => { if (token === S.token) $('view').replaceChildren(...nodes.flat().filter(Boolean)); };
    const v = await found.fn(found.params, put);
    if (token === S.token) S.view = v;
    else v?.stop?.();
  } catch (e) {
    if (token !== S.token || e.status === 401) return;
    $('view').replaceChildren(h('p', { class: 'msg bad', role: 'alert' }, e.status === 404 ? `Not found: ${title}.` : errText(e)));
  }
}

// The skip link moves the focus without touching the hash (the hash is the route).
$('skip').addEventListener('click', (ev) => { ev.preventDefault(); $('main').focus(); });
$('signout').addEventListener('click', async () => {
  try { await api('DELETE', '/api/session'); } catch { /* signed out either way */ }
  signedOut('Signed out.');
});
window.addEventListener('hashchange', () => {
  if (!location.hash.startsWith('#/') || $('nav').hidden) return;
  route().then(() => { if (S.token) $('title').focus(); });
});

(async () => {
  try {
    if (await loadSession()) await enter();
    else showSignIn();
  } catch (e) {
    $('view').replaceChildren(h('p', { class: 'msg bad', role: 'alert' }, errText(e)));
  }
})();
