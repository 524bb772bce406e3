// buy.js - the customer's purchase page /buy/{machine}: what can be sold now, pay by QRIS
// (the QR drawn here from qr_string) or on Midtrans's page, then the order's status, asked
// every second until the product drops or the refund is queued.

const $ = (id) => document.getElementById(id);
const machine = decodeURIComponent(location.pathname.split('/')[2] || '');
const rp = new Intl.NumberFormat('id-ID', { style: 'currency', currency: 'IDR', maximumFractionDigits: 0 });
const money = (n) => rp.format(n);
const saved = `vendd-order-${machine}`;
let menu = null;
let order = null; // {id, key}
let timer = null;
let lastStatus = null; // a message under the order lasts until the status moves

function say(el, text, bad) {
  el.className = bad ? 'msg bad' : 'msg';
  el.setAttribute('role', bad ? 'alert' : 'status');
  el.textContent = text;
}

async function call(method, path, body) {
  const res = await fetch(path, {
    method,
    headers: body ? { 'Content-Type': 'application/json', Accept: 'application/json' } : { Accept: 'application/json' },
    body: body ? JSON.stringify(body) : undefined,
  });
  let json = null;
  try { json = await res.json(); } catch { json = null; }
  if (!res.ok) {
    const e = new Error(json?.error?.message || `HTTP ${res.status}`);
    e.status = res.status;
    e.code = json?.error?.code;
    throw e;
  }
  return json;
}

function selected() {
  const r = document.querySelector('input[name="product"]:checked');
  return r ? menu.products.find((p) => String(p.slot) === r.value) : null;
}

function updateTotal() {
  const p = selected();
  const qty = $('qty');
  if (!p) { $('total').textContent = ''; return; }
  qty.max = String(Math.min(p.available, 100));
  const n = Math.max(1, Math.min(Number(qty.value) || 1, p.available));
  $('total').textContent = `Total: ${money(p.price * n)}`;
}

async function loadMenu() {
  document.title = `Buy from ${machine} – vendd`;
  $('title').textContent = `Buy from ${machine}`;
  try {
    menu = await call('GET', `/api/buy/${encodeURIComponent(machine)}`);
  } catch (e) {
    say($('state'), e.status === 404 ? `There is no machine ${machine}.` : `The shop cannot be reached (${e.message}). Reload to try again.`, true);
    return;
  }
  const box = $('products');
  box.replaceChildren(box.querySelector('legend'));
  menu.products.forEach((p, i) => {
    const input = document.createElement('input');
    input.type = 'radio';
    input.name = 'product';
    input.value = String(p.slot);
    input.checked = i === 0;
    input.addEventListener('change', updateTotal);
    const label = document.createElement('label');
    label.append(input, ` ${p.product_name}: ${money(p.price)} (${p.available} left, slot ${p.slot})`);
    box.append(label);
  });
  if (!menu.online) say($('state'), `Machine ${machine} is offline just now: try again later.`, true);
  else if (!menu.products.length) say($('state'), `Machine ${machine} has nothing to sell just now.`, true);
  else say($('state'), `Machine ${machine}: choose a product.`);
  $('menu').hidden = !menu.online || !menu.products.length;
  updateTotal();
}

const WORDS = {
  PENDING: 'Waiting for your payment.',
  PAID: 'Paid. The machine is getting ready…',
  DISPENSING: 'Dropping your product…',
  COMPLETED: 'Done: take your product from the machine.',
  FAILED: 'The machine could not drop your product.',
  REFUNDED: 'Your money has been refunded.',
  EXPIRED: 'The time to pay ran out: nothing was charged.',
  CANCELLED: 'The order is cancelled: nothing was charged.',
};

// Over once the product dropped, the refund is queued, or the order can no longer change.
const over = (o) => o.status === 'COMPLETED' || o.refund != null ||
  ['REFUNDED', 'EXPIRED', 'CANCELLED'].includes(o.status);

function showOrder(o) {
  if (o.status !== lastStatus) {
    lastStatus = o.status;
    say($('order-msg'), '');
  }
  $('order-sum').textContent = `Order ${o.id}: ${money(o.total_amount)}.`;
  let text = WORDS[o.status] || o.status;
  if (o.refund) text += ` A refund of ${money(o.refund.amount)} is ${o.refund.status === 'DONE' ? 'done' : 'on its way'} (${o.refund.status}).`;
  if ($('status').textContent !== text) $('status').textContent = text;
  $('status').dataset.status = o.status;
  const items = $('items');
  items.replaceChildren(...o.items.map((i) => {
    const li = document.createElement('li');
    li.textContent = `${i.quantity} × ${i.product_name}: ${i.dropped} dropped${i.failed ? `, ${i.failed} failed` : ''}`;
    return li;
  }));
  const pending = o.status === 'PENDING';
  $('howto').hidden = !pending;
  $('sim').hidden = !(pending && menu?.simulated_payments);
  $('cancel').hidden = !pending;
  $('again').hidden = !over(o);
}

// qrcode.js (56 KB) is fetched only when there is a QR to draw, not with the menu.
let qrLib = null;
function loadQr() {
  qrLib ??= new Promise((resolve) => {
    const s = document.createElement('script');
    s.src = '/assets/qrcode.js';
    s.onload = () => resolve(typeof window.qrcode === 'function');
    s.onerror = () => { qrLib = null; resolve(false); };
    document.head.append(s);
  });
  return qrLib;
}

async function showHowTo(o) {
  const box = $('howto');
  box.replaceChildren();
  if (o.qr_string && await loadQr()) {
    const qr = window.qrcode(0, 'M');
    qr.addData(o.qr_string);
    qr.make();
    const img = document.createElement('img');
    img.className = 'qr';
    img.src = qr.createDataURL(6, 4);
    img.alt = `QRIS code to pay ${money(o.total_amount)} for order ${o.id}`;
    const p = document.createElement('p');
    p.textContent = 'Scan this code with your e-wallet or bank app and pay.';
    box.append(p, img);
  } else if (o.qr_string) {
    const p = document.createElement('p');
    p.textContent = 'The QR code cannot be drawn here; ask the operator.';
    box.append(p);
  }
  if (o.redirect_url && /^https?:\/\//.test(o.redirect_url)) {
    const a = document.createElement('a');
    a.href = o.redirect_url;
    a.target = '_blank';
    a.rel = 'noopener';
    a.id = 'snap';
    a.textContent = "Pay on Midtrans's payment page (opens a new tab)";
    const p = document.createElement('p');
    p.className = 'big';
    p.append(a);
    box.append(p);
  }
  if (o.expires_at) {
    const p = document.createElement('p');
    p.className = 'hint';
    p.textContent = `Pay before ${new Date(o.expires_at).toLocaleTimeString()}.`;
    box.append(p);
  }
}

const AGAIN = 'Checking the status again…';

async function poll() {
  timer = null;
  if (!order) return;
  try {
    const o = await call('GET', `/api/buy/orders/${encodeURIComponent(order.id)}?key=${encodeURIComponent(order.key)}`);
    showOrder(o);
    if ($('order-msg').textContent === AGAIN) say($('order-msg'), '');
    if (over(o)) {
      sessionStorage.removeItem(saved);
      return;
    }
  } catch (e) {
    if (e.status === 404) {
      sessionStorage.removeItem(saved);
      say($('order-msg'), 'This order is not known here any more.', true);
      return;
    }
    say($('order-msg'), AGAIN);
  }
  timer = setTimeout(poll, 1000);
}

async function follow(id, key, first) {
  order = { id, key };
  sessionStorage.setItem(saved, JSON.stringify(order));
  $('menu').hidden = true;
  $('state').textContent = '';
  $('order').hidden = false;
  $('order-h').focus();
  if (!timer) timer = setTimeout(poll, 1000);
  try {
    const o = first || await call('GET', `/api/buy/orders/${encodeURIComponent(id)}?key=${encodeURIComponent(key)}`);
    showOrder(o);
    await showHowTo(o);
  } catch { /* poll() says it */ }
}

$('menu').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const p = selected();
  if (!p) { say($('menu-msg'), 'Choose a product first.', true); return; }
  const quantity = Number($('qty').value);
  if (!Number.isInteger(quantity) || quantity < 1 || quantity > p.available) {
    say($('menu-msg'), `Choose a quantity from 1 to ${p.available}.`, true);
    $('qty').focus();
    return;
  }
  const method = document.querySelector('input[name="method"]:checked').value;
  $('pay').disabled = true;
  say($('menu-msg'), 'Creating your order…');
  try {
    const r = await call('POST', '/api/orders', { machine_id: machine, items: [{ slot: p.slot, quantity }], payment_method: method });
    say($('menu-msg'), '');
    await follow(r.order_id, r.status_key, {
      id: r.order_id, machine_id: machine, status: r.status, total_amount: r.total_amount, payment_method: method,
      qr_string: r.qr_string ?? null, redirect_url: r.redirect_url ?? null, expires_at: r.expires_at ?? null,
      items: [{ slot: p.slot, product_name: p.product_name, quantity, dropped: 0, failed: 0 }], refund: null,
    });
  } catch (e) {
    const why = { TOO_MANY_REQUESTS: 'Too many orders from here: wait a minute.', TOO_MANY_PENDING: 'The machine is busy with other orders: try again in a few minutes.',
      WRONG_STATE: 'That is no longer available.' }[e.code] || e.message;
    say($('menu-msg'), `The order was not placed: ${why}`, true);
    loadMenu();
  } finally {
    $('pay').disabled = false;
  }
});
$('qty').addEventListener('input', updateTotal);

// Only with the project's fake Midtrans (vendd names it in simulated_payments): it pays and
// notifies vendd as Midtrans would. The answer is opaque (no-cors); the polling shows the rest.
$('sim').addEventListener('click', async () => {
  if (!order || !menu?.simulated_payments) return;
  $('sim').disabled = true;
  say($('order-msg'), 'Paying with the simulated gateway…');
  try {
    await fetch(`${menu.simulated_payments}${encodeURIComponent(order.id)}`, { method: 'POST', mode: 'no-cors' });
  } catch (e) {
    say($('order-msg'), `The simulated gateway cannot be reached (${e.message}).`, true);
  } finally {
    $('sim').disabled = false;
  }
});

$('cancel').addEventListener('click', async () => {
  if (!order) return;
  try {
    // The order's key proves it is this customer's (without it vendd answers 404).
    await call('POST', `/api/orders/${encodeURIComponent(order.id)}/cancel?key=${encodeURIComponent(order.key)}`);
  } catch (e) {
    say($('order-msg'), e.code === 'WRONG_STATE' ? 'Too late to cancel: the payment has arrived.' : `Not cancelled: ${e.message}`, true);
  }
  if (!timer) timer = setTimeout(poll, 0);
});

$('again').addEventListener('click', async () => {
  order = null;
  sessionStorage.removeItem(saved);
  $('order').hidden = true;
  $('order-msg').textContent = '';
  await loadMenu();
  $('title').focus();
});
$('title').tabIndex = -1;

(async () => {
  await loadMenu();
  let keep = null;
  try { keep = JSON.parse(sessionStorage.getItem(saved) || 'null'); } catch { keep = null; }
  if (keep?.id && keep?.key) follow(keep.id, keep.key);
})();
