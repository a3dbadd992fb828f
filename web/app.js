// seatgate's web front end: plain JavaScript modules, no build step, served by the API from
// assets embedded in its binary. Hash routes keep every page under "/" so no page can shadow
// an API path. The seat map is live: it follows /api/v1/showtimes/{id}/seats/events. Buyers may
// pick seats on the map or ask for the N best seats; door staff check tickets in at #/door.

import { ApiError, get, getText, post, del, api, stream, session, signIn, signOut, refreshUser, money } from './api.js';

const main = document.getElementById('main');
const statusBox = document.getElementById('status');
/** Closes the current view's EventSource and timers when the route changes. */
let cleanup = null;

// ---------------------------------------------------------------------------------------------
// Small helpers

/** Builds an element; attributes starting with "on" are listeners. Text is never parsed as HTML. */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === false || v === null || v === undefined) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

let sayTimer = null;
function say(message) {
  statusBox.textContent = '';
  clearTimeout(sayTimer);
  // Set after a tick so screen readers announce a repeated message too; clear it once read.
  setTimeout(() => { statusBox.textContent = message; }, 20);
  sayTimer = setTimeout(() => { statusBox.textContent = ''; }, 10_000);
}

function errorText(e) {
  if (e instanceof ApiError) {
    const fields = (e.problem.errors || []).map((f) => `${f.field}: ${f.message}`).join('; ');
    return fields ? `${e.message} (${fields})` : e.message;
  }
  if (e instanceof TypeError && /fetch/i.test(e.message)) return 'The server could not be reached. Try again.';
  console.error(e);
  return `Something failed in this page: ${e.message}`;
}

function when(iso) {
  return new Date(iso).toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
}

function field(label, input, hint) {
  const id = input.id || `f-${Math.random().toString(36).slice(2)}`;
  input.id = id;
  return h('div', { class: 'field' }, h('label', { for: id }, label), input, hint ? h('small', {}, hint) : null);
}

/** A form whose submit runs `action`; errors land in the form's alert box. */
function form(title, fields, submitLabel, action) {
  const alert = h('p', { class: 'error', role: 'alert' });
  const button = h('button', { type: 'submit' }, submitLabel);
  const el = h('form', { class: 'card', 'aria-label': title }, h('h2', {}, title), ...fields, alert, button);
  el.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    alert.textContent = '';
    button.disabled = true;
    try {
      await action(new FormData(el), el);
    } catch (e) {
      alert.textContent = errorText(e);
    } finally {
      button.disabled = false;
    }
  });
  return el;
}

function needLogin(text) {
  return h('p', {}, h('a', { href: '#/login' }, 'Log in or sign up'), ` ${text}`);
}

// ---------------------------------------------------------------------------------------------
// Routing

const routes = [
  [/^#?\/?$/, showtimesView],
  [/^#\/login$/, loginView],
  [/^#\/showtime\/([0-9a-fA-F-]{36})$/, seatView],
  [/^#\/showtime\/([0-9a-fA-F-]{36})\/queue$/, waitingRoomView],
  [/^#\/admin\/sale\/([0-9a-fA-F-]{36})$/, adminSaleView],
  [/^#\/bookings$/, bookingsView],
  [/^#\/admin$/, adminView],
  [/^#\/door$/, doorView],
];

function updateNav() {
  const s = session();
  for (const el of document.querySelectorAll('[data-needs]')) {
    const need = el.dataset.needs;
    const role = s?.user.role;
    const show = need === 'anonymous' ? !s
      : need === 'admin' ? role === 'admin'
        : need === 'door' ? role === 'door' || role === 'admin'
          : !!s;
    el.closest('li').hidden = !show;
  }
  const logout = document.getElementById('logout');
  logout.textContent = s ? `Log out ${s.user.name}` : 'Log out';
  for (const a of document.querySelectorAll('nav a')) {
    if (a.getAttribute('href') === (location.hash || '#/')) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
}

async function route() {
  if (cleanup) cleanup();
  cleanup = null;
  updateNav();
  const hash = location.hash || '#/';
  main.replaceChildren();
  for (const [pattern, view] of routes) {
    const m = hash.match(pattern);
    if (!m) continue;
    try {
      await view(...m.slice(1));
    } catch (e) {
      main.replaceChildren(h('h1', {}, 'Something went wrong'), h('p', { class: 'error', role: 'alert' }, errorText(e)));
    }
    return;
  }
  main.replaceChildren(h('h1', {}, 'Page not found'), h('p', {}, h('a', { href: '#/' }, 'See the showtimes')));
}

// ---------------------------------------------------------------------------------------------
// Sign up and log in

async function loginView() {
  const done = (auth) => {
    signIn(auth);
    say(`Signed in as ${auth.user.name}`);
    location.hash = '#/';
  };
  main.append(
    h('h1', {}, 'Log in or sign up'),
    h('div', { class: 'columns' },
      form('Log in', [
        field('Email', h('input', { name: 'email', type: 'email', autocomplete: 'email', required: true })),
        field('Password', h('input', { name: 'password', type: 'password', autocomplete: 'current-password', required: true })),
      ], 'Log in', async (data) => {
        done(await post('/api/v1/auth/login', { email: data.get('email'), password: data.get('password') }));
      }),
      form('Sign up', [
        field('Name', h('input', { name: 'name', autocomplete: 'name', required: true })),
        field('Email', h('input', { name: 'email', type: 'email', autocomplete: 'email', required: true })),
        field('Password', h('input', { name: 'password', type: 'password', autocomplete: 'new-password', required: true, minlength: 8 }), 'At least 8 characters'),
      ], 'Create account', async (data) => {
        done(await post('/api/v1/auth/register', { name: data.get('name'), email: data.get('email'), password: data.get('password') }));
      }),
    ),
  );
}

// ---------------------------------------------------------------------------------------------
// Showtimes

async function showtimesView() {
  main.append(h('h1', {}, 'Showtimes'));
  const page = await get('/api/v1/showtimes?per_page=100');
  if (page.items.length === 0) {
    main.append(h('p', {}, 'No showtimes are scheduled yet.'),
      session()?.user.role === 'admin' ? h('p', {}, h('a', { href: '#/admin' }, 'Create one')) : null);
    return;
  }
  main.append(h('ul', { class: 'showtimes' }, page.items.map((s) => h('li', { class: 'card' },
    h('h2', {}, s.movie_title),
    h('p', {}, `${when(s.starts_at)} · ${s.theater_name}, ${s.city} · ${s.screen_name}`),
    h('p', { class: 'prices' }, Object.entries(s.prices).map(([c, p]) => `${c} ${money(p, s.currency)}`).join(' · ')),
    s.status === 'cancelled' ? h('p', {}, 'Cancelled') : h('a', { class: 'button', href: `#/showtime/${s.id}` }, 'Choose seats'),
  ))));
}

// ---------------------------------------------------------------------------------------------
// The live seat map, holding and paying

const holdKey = (id) => `seatgate.hold.${id}`;

function loadHold(showtimeId) {
  try {
    const hold = JSON.parse(sessionStorage.getItem(holdKey(showtimeId)) || 'null');
    return hold && new Date(hold.expires_at) > new Date() ? hold : null;
  } catch {
    return null;
  }
}

function saveHold(showtimeId, hold) {
  if (hold) sessionStorage.setItem(holdKey(showtimeId), JSON.stringify(hold));
  else sessionStorage.removeItem(holdKey(showtimeId));
}

const CATEGORY_CLASSES = ['cat-a', 'cat-b', 'cat-c', 'cat-d', 'cat-e'];

async function seatView(showtimeId) {
  const [showtime, sale] = await Promise.all([get(`/api/v1/showtimes/${showtimeId}`), get(`/api/v1/showtimes/${showtimeId}/sale`)]);
  // A sale with a waiting room: only admitted users get the seat map; choosing seats joins
  // the line (joining again returns the same entry).
  if (sale.queue && session() && !sale.queue.fail_open) {
    const entry = await post(`/api/v1/showtimes/${showtimeId}/queue`, {});
    if (entry.state !== 'admitted') {
      location.hash = `#/showtime/${showtimeId}/queue`;
      return;
    }
  }
  const currency = showtime.currency;
  const categories = Object.keys(showtime.prices);
  const catClass = (c) => CATEGORY_CLASSES[Math.max(0, categories.indexOf(c)) % CATEGORY_CLASSES.length];
  const view = {
    seats: new Map(), // id -> {id, row, number, category, price, status}
    buttons: new Map(), // id -> button
    selected: new Set(),
    hold: session() ? loadHold(showtimeId) : null,
    reservation: null,
  };
  const live = h('p', { class: 'live', 'data-state': 'connecting' }, 'Connecting…');
  const grid = h('div', { class: 'seatmap', role: 'group', 'aria-label': 'Seat map' });
  const panel = h('section', { class: 'panel card', 'aria-labelledby': 'panel-title' });
  main.append(
    h('h1', {}, showtime.movie_title),
    h('p', {}, `${when(showtime.starts_at)} · ${showtime.theater_name}, ${showtime.city} · ${showtime.screen_name}`),
    sale.opens_at && new Date(sale.opens_at) > new Date() ? h('p', { class: 'note' }, `On sale from ${when(sale.opens_at)}`) : null,
    sale.queue && !session() ? needLogin('to join the waiting room of this sale.') : null,
    session()?.user.role === 'admin' ? h('p', {}, h('a', { href: `#/admin/sale/${showtimeId}` }, 'Manage the sale')) : null,
    live,
    h('ul', { class: 'legend', 'aria-label': 'Legend' },
      categories.map((c) => h('li', {}, h('span', { class: `swatch ${catClass(c)}`, 'aria-hidden': 'true' }), `${c} ${money(showtime.prices[c], currency)}`)),
      h('li', {}, h('span', { class: 'swatch st-held', 'aria-hidden': 'true' }), 'held'),
      h('li', {}, h('span', { class: 'swatch st-sold', 'aria-hidden': 'true' }), 'sold'),
      h('li', {}, h('span', { class: 'swatch st-mine', 'aria-hidden': 'true' }), 'yours'),
    ),
    h('div', { class: 'screen-label', 'aria-hidden': 'true' }, 'Screen'),
    grid,
    panel,
  );

  const mine = (id) => view.hold?.seat_ids.includes(id) ?? false;
  const label = (s) => `${s.row}${s.number}`;
  const statusText = (s) => (s.status === 'held' && mine(s.id) ? 'held by you' : s.status);

  function paintSeat(s) {
    const b = view.buttons.get(s.id);
    if (!b) return;
    const selected = view.selected.has(s.id);
    const unavailable = s.status !== 'available';
    b.className = `seat ${catClass(s.category)} st-${s.status}${mine(s.id) && s.status === 'held' ? ' st-mine' : ''}`;
    b.setAttribute('aria-pressed', String(selected));
    b.setAttribute('aria-disabled', String(unavailable || !!view.hold));
    b.setAttribute('aria-label', `Row ${s.row} seat ${s.number}, ${s.category}, ${money(s.price, currency)}, ${statusText(s)}`);
    b.dataset.status = s.status;
  }

  function buildGrid() {
    const rows = new Map();
    for (const s of view.seats.values()) {
      if (!rows.has(s.row)) rows.set(s.row, []);
      rows.get(s.row).push(s);
    }
    grid.replaceChildren();
    view.buttons.clear();
    for (const [row, seats] of rows) {
      const line = h('div', { class: 'row', role: 'group', 'aria-label': `Row ${row}` }, h('span', { class: 'row-label', 'aria-hidden': 'true' }, row));
      for (const s of seats) {
        const b = h('button', { type: 'button', 'data-seat': s.id, 'data-label': label(s), onclick: () => toggle(s.id) }, String(s.number));
        view.buttons.set(s.id, b);
        line.append(b);
        paintSeat(s);
      }
      grid.append(line);
    }
  }

  function toggle(id) {
    const s = view.seats.get(id);
    if (!s || view.hold) return;
    if (s.status !== 'available') {
      say(`Row ${s.row} seat ${s.number} is ${s.status}`);
      return;
    }
    if (view.selected.has(id)) view.selected.delete(id);
    else view.selected.add(id);
    paintSeat(s);
    renderPanel();
  }

  function applySnapshot(snap) {
    const layoutChanged = snap.seats.length !== view.seats.size || snap.seats.some((s) => !view.seats.has(s.id));
    view.seats = new Map(snap.seats.map((s) => [s.id, s]));
    if (layoutChanged) buildGrid();
    for (const id of [...view.selected]) if (view.seats.get(id)?.status !== 'available') view.selected.delete(id);
    for (const s of view.seats.values()) paintSeat(s);
    renderPanel();
  }

  function applyChange(change) {
    const status = change.type === 'held' ? 'held' : change.type === 'sold' ? 'sold' : 'available';
    const taken = [];
    for (const id of change.seat_ids) {
      const s = view.seats.get(id);
      if (!s) continue;
      s.status = status;
      if (status !== 'available' && view.selected.delete(id)) taken.push(label(s));
      paintSeat(s);
    }
    if (taken.length) say(`Just taken by someone else: ${taken.join(', ')}`);
    renderPanel();
  }

  // Live updates. EventSource reconnects by itself after a dropped stream (the server sends a
  // fresh snapshot then); after an error status it gives up, so try again ourselves.
  let source = null;
  let retry = null;
  function connect() {
    source = new EventSource(`/api/v1/showtimes/${showtimeId}/seats/events`);
    source.addEventListener('snapshot', (ev) => {
      applySnapshot(JSON.parse(ev.data));
      live.dataset.state = 'live';
      live.textContent = 'Live: seats update as others book';
    });
    for (const kind of ['held', 'released', 'expired', 'sold']) {
      source.addEventListener(kind, (ev) => applyChange(JSON.parse(ev.data)));
    }
    source.addEventListener('error', () => {
      live.dataset.state = 'offline';
      live.textContent = 'Reconnecting…';
      if (source.readyState === EventSource.CLOSED) retry = setTimeout(connect, 3000);
    });
  }
  connect();

  // Hold countdown, and the outcome of a checkout: pushed by the reservation's event stream,
  // polled only when the stream fails.
  let ticker = null;
  let poller = null;
  let watcher = null;
  cleanup = () => {
    source?.close();
    clearTimeout(retry);
    clearInterval(ticker);
    clearTimeout(poller);
    watcher?.abort();
  };

  function setHold(hold) {
    view.hold = hold;
    saveHold(showtimeId, hold);
    for (const s of view.seats.values()) paintSeat(s);
    renderPanel();
  }

  async function holdSeats() {
    try {
      const hold = await post(`/api/v1/showtimes/${showtimeId}/holds`, { seat_ids: [...view.selected] });
      view.selected.clear();
      setHold({ ...hold, key: crypto.randomUUID() });
      say(`Seats held until ${new Date(hold.expires_at).toLocaleTimeString()}`);
    } catch (e) {
      if (e instanceof ApiError && e.problem.unavailable_seat_ids) {
        for (const id of e.problem.unavailable_seat_ids) view.selected.delete(id);
      }
      say(errorText(e));
      renderPanel();
    }
  }

  async function holdBest(count, category) {
    try {
      const best_available = category ? { count, category } : { count };
      const hold = await post(`/api/v1/showtimes/${showtimeId}/holds`, { best_available });
      view.selected.clear();
      setHold({ ...hold, key: crypto.randomUUID() });
      const names = hold.seat_ids.map((id) => view.seats.get(id)).filter(Boolean).map(label);
      say(`Best seats held: ${names.join(', ')}, until ${new Date(hold.expires_at).toLocaleTimeString()}`);
    } catch (e) {
      if (e instanceof ApiError && e.status === 409 && e.problem.code === 'seats_unavailable') {
        say(`No ${count} seats together are free${category ? ` in ${category}` : ''}. Try fewer seats or pick on the map.`);
      } else {
        say(errorText(e));
      }
    }
  }

  function bestForm() {
    const count = h('input', { name: 'count', type: 'number', min: '1', max: '10', value: '2', required: true, inputmode: 'numeric' });
    const category = h('select', { name: 'category' },
      h('option', { value: '' }, 'Any category'),
      categories.map((c) => h('option', { value: c }, c)));
    const button = h('button', { type: 'submit', class: 'secondary' }, 'Hold 2 best seats');
    count.addEventListener('input', () => {
      const n = Number(count.value) || 0;
      button.textContent = `Hold ${n} best seat${n === 1 ? '' : 's'}`;
    });
    const el = h('form', { class: 'best', 'aria-label': 'Best seats' },
      h('div', { class: 'field' }, h('label', { for: 'best-count' }, 'Seats together'), count),
      h('div', { class: 'field' }, h('label', { for: 'best-category' }, 'Category'), category),
      button);
    count.id = 'best-count';
    category.id = 'best-category';
    el.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      button.disabled = true;
      try {
        await holdBest(Number(count.value), category.value);
      } finally {
        button.disabled = false;
      }
    });
    return el;
  }

  async function release() {
    try {
      await del(`/api/v1/holds/${view.hold.hold_id}`);
      say('Seats released');
    } catch (e) {
      say(errorText(e));
    }
    setHold(null);
  }

  async function pay(token) {
    try {
      const accepted = await post(`/api/v1/holds/${view.hold.hold_id}/checkout`, { payment_token: token }, { 'Idempotency-Key': view.hold.key });
      view.hold.reservation_id = accepted.reservation_id;
      saveHold(showtimeId, view.hold);
      view.reservation = { status: accepted.status, amount: accepted.amount };
      renderPanel();
      watchReservation(accepted.reservation_id);
    } catch (e) {
      say(errorText(e));
      if (e instanceof ApiError && e.status === 410) setHold(null);
    }
  }

  // Follows GET /api/v1/reservations/{id}/events (fetch, since EventSource cannot send the
  // bearer token): the current view first, then the settled one, then the end of the stream.
  async function watchReservation(id) {
    watcher?.abort();
    const controller = new AbortController();
    watcher = controller;
    let latest = null;
    try {
      await stream(`/api/v1/reservations/${id}/events`, (event, r) => {
        latest = r;
        view.reservation = r;
        if (r.status === 'payment_pending') renderPanel();
      }, controller.signal);
    } catch (e) {
      // Falls back to polling below.
    }
    if (controller.signal.aborted) return;
    if (latest && latest.status !== 'payment_pending') {
      await settled(latest);
    } else {
      pollReservation(id);
    }
  }

  // The fallback when the stream fails or ends while the payment is still pending.
  async function pollReservation(id) {
    try {
      const r = await get(`/api/v1/reservations/${id}`);
      view.reservation = r;
      if (r.status !== 'payment_pending') {
        await settled(r);
        return;
      }
      poller = setTimeout(() => pollReservation(id), 500);
    } catch (e) {
      poller = setTimeout(() => pollReservation(id), 1000);
    }
    renderPanel();
  }

  async function settled(r) {
    view.reservation = r;
    try {
      if (r.status === 'confirmed' && r.booking_id) {
        const booking = await get(`/api/v1/bookings/${r.booking_id}`);
        view.reservation.ticket_code = booking.ticket_code;
        say(`Booked. Ticket code ${booking.ticket_code}`);
      } else {
        say(`Payment ${r.status}${r.failure_reason ? `: ${r.failure_reason}` : ''}`);
      }
    } catch (e) {
      say(r.status === 'confirmed' ? 'Booked. See your bookings for the ticket.' : errorText(e));
    }
    view.done = view.reservation;
    view.reservation = null;
    setHold(null);
  }

  function renderPanel() {
    clearInterval(ticker);
    const title = h('h2', { id: 'panel-title' }, 'Your seats');
    const parts = [title];
    if (view.done) {
      const d = view.done;
      parts.push(d.status === 'confirmed'
        ? h('p', { class: 'ticket' }, 'Booked! Ticket code ', h('strong', { 'data-testid': 'ticket-code' }, d.ticket_code || ''))
        : h('p', { class: 'error' }, `Payment ${d.status}${d.failure_reason ? `: ${d.failure_reason}` : ''}. Your seats were released.`));
      parts.push(h('p', {}, h('a', { href: '#/bookings' }, 'See my bookings')));
    }
    if (!session()) {
      parts.push(needLogin('to hold and buy seats.'));
    } else if (view.reservation) {
      parts.push(h('p', { 'data-testid': 'reservation-status' }, 'Payment pending… ', h('span', { class: 'spinner', 'aria-hidden': 'true' })));
    } else if (view.hold) {
      const names = view.hold.seat_ids.map((id) => view.seats.get(id)).filter(Boolean);
      const total = names.reduce((sum, s) => sum + s.price, 0);
      const countdown = h('p', { class: 'countdown', role: 'timer', 'aria-live': 'off' });
      const tick = () => {
        const left = Math.max(0, Math.round((new Date(view.hold.expires_at) - new Date()) / 1000));
        countdown.textContent = `Held for you for ${Math.floor(left / 60)}:${String(left % 60).padStart(2, '0')}`;
        if (left === 60) say('One minute left on your hold');
        if (left === 0) {
          say('Your hold expired');
          setHold(null);
        }
      };
      tick();
      ticker = setInterval(tick, 1000);
      const tokens = [
        ['tok_ok', 'Test card that pays'],
        ['tok_declined', 'Test card that is declined'],
        ['tok_error', 'Test card with a gateway error (retried)'],
      ];
      const payForm = h('form', { class: 'pay', 'aria-label': 'Payment' },
        h('fieldset', {}, h('legend', {}, 'Payment method'),
          tokens.map(([value, text], i) => h('label', { class: 'radio' },
            h('input', { type: 'radio', name: 'token', value, checked: i === 0 }), ` ${text}`))),
        h('div', { class: 'actions' },
          h('button', { type: 'submit' }, `Pay ${money(total, currency)}`),
          h('button', { type: 'button', class: 'secondary', onclick: release }, 'Release seats')));
      payForm.addEventListener('submit', (ev) => {
        ev.preventDefault();
        pay(new FormData(payForm).get('token'));
      });
      parts.push(h('p', {}, `Seats ${names.map(label).join(', ')} · ${money(total, currency)}`), countdown, payForm);
    } else {
      const chosen = [...view.selected].map((id) => view.seats.get(id)).filter(Boolean);
      const total = chosen.reduce((sum, s) => sum + s.price, 0);
      parts.push(
        h('p', { 'data-testid': 'selection' }, chosen.length ? `Selected ${chosen.map(label).join(', ')} · ${money(total, currency)}` : 'Pick seats on the map.'),
        h('button', { type: 'button', disabled: chosen.length === 0, onclick: holdSeats }, chosen.length ? `Hold ${chosen.length} seat${chosen.length > 1 ? 's' : ''}` : 'Hold seats'),
        h('p', { class: 'or' }, 'or let us pick the best seats together:'),
        // One form for the view's life, so what was typed survives the live updates' re-renders.
        view.bestForm ||= bestForm(),
      );
    }
    const active = panel.contains(document.activeElement) ? document.activeElement : null;
    const focused = active?.textContent;
    panel.replaceChildren(...parts);
    if (active?.isConnected) active.focus();
    else if (focused) [...panel.querySelectorAll('button')].find((b) => b.textContent === focused)?.focus();
  }

  // A hold kept from before a reload: check it is still alive.
  if (view.hold) {
    try {
      const hold = await get(`/api/v1/holds/${view.hold.hold_id}`);
      view.hold.expires_at = hold.expires_at;
      if (view.hold.reservation_id) {
        view.reservation = { status: 'payment_pending' };
        watchReservation(view.hold.reservation_id);
      }
    } catch {
      setHold(null);
    }
  }
  renderPanel();
}

// ---------------------------------------------------------------------------------------------
// My bookings

async function bookingsView() {
  main.append(h('h1', {}, 'My bookings'));
  if (!session()) {
    main.append(needLogin('to see your bookings.'));
    return;
  }
  const page = await get('/api/v1/bookings?per_page=100');
  if (page.items.length === 0) {
    main.append(h('p', {}, 'No bookings yet. '), h('a', { href: '#/' }, 'Find a showtime'));
    return;
  }
  const showtimes = new Map();
  const list = h('ul', { class: 'bookings' });
  main.append(list);
  for (const b of page.items) {
    if (!showtimes.has(b.showtime_id)) {
      const [st, map] = await Promise.all([
        get(`/api/v1/showtimes/${b.showtime_id}`),
        get(`/api/v1/showtimes/${b.showtime_id}/seats`),
      ]);
      showtimes.set(b.showtime_id, { st, names: new Map(map.seats.map((s) => [s.id, `${s.row}${s.number}`])) });
    }
    const { st, names } = showtimes.get(b.showtime_id);
    const cancel = h('button', { type: 'button', class: 'secondary', onclick: async () => {
      if (!window.confirm(`Cancel booking ${b.ticket_code}? The payment is refunded.`)) return;
      try {
        await post(`/api/v1/bookings/${b.id}/cancel`, {});
        say(`Booking ${b.ticket_code} cancelled; the refund is on its way`);
        route();
      } catch (e) {
        say(errorText(e));
      }
    } }, `Cancel booking ${b.ticket_code}`);
    const qr = b.status === 'confirmed' ? h('img', { class: 'qr', alt: `QR code of ticket ${b.ticket_code}`, width: '224', height: '224' }) : null;
    if (qr) {
      // The SVG needs the token, so it is fetched, then shown as a data: URL (the page's CSP
      // allows data: images and nothing else from outside).
      getText(`/api/v1/bookings/${b.id}/ticket.svg`)
        .then((svg) => { qr.src = `data:image/svg+xml;charset=utf-8,${encodeURIComponent(svg)}`; })
        .catch(() => { qr.replaceWith(h('p', { class: 'error' }, 'The QR code could not be loaded; show the ticket code.')); });
    }
    list.append(h('li', { class: 'card' },
      h('h2', {}, st.movie_title),
      h('p', {}, `${when(st.starts_at)} · ${st.theater_name} · ${st.screen_name}`),
      h('p', {}, 'Ticket code ', h('strong', {}, b.ticket_code)),
      qr,
      h('p', {}, `Seats ${b.seat_ids.map((id) => names.get(id) || id).join(', ')} · ${money(b.amount, b.currency)} · ${b.status}`),
      b.status === 'confirmed' ? cancel : null));
  }
}

// ---------------------------------------------------------------------------------------------
// Admin: movie, theater, screen layout, showtime

// ---------------------------------------------------------------------------------------------
// The waiting room

/** Seconds as "about 3 min" / "about 40 s". */
function eta(secs) {
  if (secs === null || secs === undefined) return null;
  return secs >= 90 ? `about ${Math.round(secs / 60)} min` : `about ${Math.max(1, secs)} s`;
}

async function waitingRoomView(showtimeId) {
  const showtime = await get(`/api/v1/showtimes/${showtimeId}`);
  main.append(h('h1', {}, `Waiting room: ${showtime.movie_title}`),
    h('p', {}, `${when(showtime.starts_at)} · ${showtime.theater_name}, ${showtime.city}`));
  if (!session()) {
    main.append(needLogin('to join the waiting room.'));
    return;
  }
  const place = h('p', { class: 'place', 'data-testid': 'queue-place', 'aria-live': 'polite' }, 'Joining…');
  const detail = h('p', { 'data-testid': 'queue-detail' });
  main.append(h('section', { class: 'card', 'aria-labelledby': 'queue-title' }, h('h2', { id: 'queue-title' }, 'Your place in line'), place, detail,
    h('p', {}, h('small', {}, 'Everyone who joined before the sale opened gets a random place at opening; after that, first come, first served. Keep this page open: it moves by itself.'))));
  const controller = new AbortController();
  let retry = null;
  cleanup = () => { controller.abort(); clearTimeout(retry); };

  function show(entry) {
    if (entry.state === 'admitted') {
      place.textContent = "It's your turn";
      detail.textContent = `You may choose seats until ${when(entry.admitted_until)}.`;
      say("It's your turn: the seat map is open");
      location.hash = `#/showtime/${showtimeId}`;
      return;
    }
    if (entry.state === 'expired') {
      place.textContent = 'Your turn has passed';
      detail.textContent = 'Your admission to this sale ran out.';
      return;
    }
    place.textContent = entry.position ? `You are number ${entry.position} in line` : 'You are in the waiting room';
    const wait = eta(entry.estimated_wait_secs);
    detail.textContent = entry.position ? (wait ? `Estimated wait: ${wait}.` : 'Admission is paused for a moment.') : 'Places are drawn when the sale opens.';
  }

  const joined = await post(`/api/v1/showtimes/${showtimeId}/queue`, {});
  show(joined);
  async function follow() {
    try {
      await stream(`/api/v1/showtimes/${showtimeId}/queue/me/events`, (event, data) => { if (event === 'entry') show(data); }, controller.signal);
    } catch (e) {
      if (controller.signal.aborted) return;
      detail.textContent = `Reconnecting… (${errorText(e)})`;
    }
    if (!controller.signal.aborted) retry = setTimeout(follow, 3000);
  }
  follow();
}

async function adminSaleView(showtimeId) {
  main.append(h('h1', {}, 'Sale'));
  if (session()?.user.role !== 'admin') {
    main.append(h('p', {}, 'This page is for admins. '), needLogin('with an admin account.'));
    return;
  }
  const [showtime, sale] = await Promise.all([get(`/api/v1/showtimes/${showtimeId}`), get(`/api/v1/showtimes/${showtimeId}/sale`)]);
  main.append(h('p', {}, h('a', { href: `#/showtime/${showtimeId}` }, `${showtime.movie_title} at ${when(showtime.starts_at)}`)));
  const local = (iso) => { const d = new Date(iso); d.setMinutes(d.getMinutes() - d.getTimezoneOffset()); return d.toISOString().slice(0, 16); };
  const stats = h('dl', { class: 'stats', 'data-testid': 'sale-stats' });
  const statsCard = h('section', { class: 'card', 'aria-labelledby': 'stats-title' }, h('h2', { id: 'stats-title' }, 'Waiting room, live'), stats);
  const pause = h('button', { type: 'button' }, 'Pause admission');
  main.append(form('Sale settings', [
    field('Opens at', h('input', { name: 'opens_at', type: 'datetime-local', required: true, value: local(sale.opens_at || new Date().toISOString()) })),
    field('Admissions per minute', h('input', { name: 'rate', type: 'number', min: 1, value: sale.queue?.admit_per_minute ?? '' }), 'Empty: no waiting room'),
    field('Admission lasts (minutes)', h('input', { name: 'minutes', type: 'number', min: 1, max: 1440, value: sale.queue?.admission_minutes ?? 10 })),
    field('Fail open', h('input', { name: 'fail_open', type: 'checkbox', checked: sale.queue?.fail_open || false }), 'Everyone may hold, admitted or not: only while the queue itself is broken'),
  ], 'Save sale', async (data) => {
    const rate = data.get('rate');
    const queue = rate ? { admit_per_minute: Number(rate), admission_minutes: Number(data.get('minutes')), fail_open: data.get('fail_open') === 'on' } : null;
    await api('PUT', `/api/v1/showtimes/${showtimeId}/sale`, { opens_at: new Date(data.get('opens_at')).toISOString(), queue });
    say('Sale saved');
    refresh();
  }), statsCard);
  statsCard.append(pause);
  let paused = false;
  pause.addEventListener('click', async () => {
    try {
      await post(`/api/v1/showtimes/${showtimeId}/queue/${paused ? 'resume' : 'pause'}`, {});
      refresh();
    } catch (e) { say(errorText(e)); }
  });
  async function refresh() {
    try {
      const s = await get(`/api/v1/showtimes/${showtimeId}/queue`);
      paused = s.paused;
      pause.textContent = paused ? 'Resume admission' : 'Pause admission';
      pause.hidden = false;
      const rows = [['Waiting', s.waiting], ['Admitted now', s.admitted], ['Admissions ran out', s.expired], ['Seats held', s.held],
        ['Seats sold', s.sold], ['Bookings per second', s.bookings_per_second.toFixed(2)], ['Admissions per minute', s.admit_per_minute],
        ['State', s.fail_open ? 'fail open' : s.paused ? 'paused' : 'admitting']];
      stats.replaceChildren(...rows.flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, String(v))]));
    } catch (e) {
      pause.hidden = true;
      stats.replaceChildren(h('dt', {}, 'No waiting room'), h('dd', {}, e instanceof ApiError && e.status === 404 ? 'this sale has none' : errorText(e)));
    }
  }
  await refresh();
  const timer = setInterval(refresh, 2000);
  cleanup = () => clearInterval(timer);
}

async function adminView() {
  main.append(h('h1', {}, 'Admin'));
  if (session()?.user.role !== 'admin') {
    main.append(h('p', {}, 'This page is for admins. '), needLogin('with an admin account.'));
    return;
  }
  const movieSelect = h('select', { name: 'movie_id', required: true });
  const theaterSelects = [h('select', { name: 'theater_id', required: true }), h('select', { name: 'theater_id', required: true })];
  const screenSelect = h('select', { name: 'screen_id', required: true });
  const priceBox = h('div', { class: 'prices-box' });
  let screens = [];

  async function refresh() {
    const [movies, theaters] = await Promise.all([get('/api/v1/movies?per_page=100'), get('/api/v1/theaters?per_page=100')]);
    movieSelect.replaceChildren(...movies.items.map((m) => h('option', { value: m.id }, m.title)));
    for (const sel of theaterSelects) {
      const keep = sel.value;
      sel.replaceChildren(...theaters.items.map((t) => h('option', { value: t.id }, `${t.name}, ${t.city}`)));
      if (keep) sel.value = keep;
    }
    await loadScreens();
  }

  async function loadScreens() {
    const theater = theaterSelects[1].value;
    const list = theater ? await get(`/api/v1/theaters/${theater}/screens`) : [];
    // An answer for a theater no longer chosen is dropped; the newer choice renders its own.
    if (theater !== theaterSelects[1].value) return;
    const keep = screenSelect.value;
    screens = list;
    screenSelect.replaceChildren(...screens.map((s) => h('option', { value: s.id }, `${s.name} (${s.capacity} seats)`)));
    if (keep && screens.some((s) => s.id === keep)) screenSelect.value = keep;
    renderPrices();
  }

  // Re-rendered whenever the screens load or the screen changes: a price already typed for a
  // category stays (a late answer of loadScreens used to reset every price to 12.00).
  function renderPrices() {
    const typed = new Map([...priceBox.querySelectorAll('input')].map((i) => [i.name, i.value]));
    const screen = screens.find((s) => s.id === screenSelect.value);
    priceBox.replaceChildren(...(screen?.categories || []).map((c) =>
      field(`Price of ${c} (major units)`, h('input', { name: `price:${c}`, type: 'number', min: '0', step: '0.01', value: typed.get(`price:${c}`) ?? '12.00', required: true }))));
  }
  theaterSelects[1].addEventListener('change', loadScreens);
  screenSelect.addEventListener('change', renderPrices);

  const soon = new Date(Date.now() + 24 * 3600 * 1000);
  soon.setMinutes(0, 0, 0);
  const local = new Date(soon.getTime() - soon.getTimezoneOffset() * 60000).toISOString().slice(0, 16);

  main.append(h('div', { class: 'columns' },
    form('New movie', [
      field('Title', h('input', { name: 'title', required: true })),
      field('Duration in minutes', h('input', { name: 'duration', type: 'number', min: '1', value: '120', required: true })),
      field('Genres', h('input', { name: 'genres', value: 'drama' }), 'Comma separated'),
      field('Description', h('textarea', { name: 'description', rows: '2' })),
    ], 'Create movie', async (data, el) => {
      const movie = await post('/api/v1/movies', {
        title: data.get('title'),
        duration_minutes: Number(data.get('duration')),
        genres: String(data.get('genres')).split(',').map((g) => g.trim()).filter(Boolean),
        description: data.get('description'),
      });
      say(`Movie "${movie.title}" created`);
      el.reset();
      await refresh();
    }),
    form('New theater', [
      field('Name', h('input', { name: 'name', required: true })),
      field('City', h('input', { name: 'city', required: true })),
      field('Address', h('input', { name: 'address', required: true })),
    ], 'Create theater', async (data, el) => {
      const t = await post('/api/v1/theaters', { name: data.get('name'), city: data.get('city'), address: data.get('address') });
      say(`Theater "${t.name}" created`);
      el.reset();
      await refresh();
    }),
    form('New screen and seat layout', [
      field('Theater', theaterSelects[0]),
      field('Screen name', h('input', { name: 'name', required: true })),
      field('Rows', h('textarea', { name: 'rows', rows: '4', required: true }, 'A 10 standard\nB 10 standard\nC 8 premium'),
        'One row a line: label, number of seats, category'),
    ], 'Create screen', async (data) => {
      const rows = String(data.get('rows')).split('\n').map((l) => l.trim()).filter(Boolean).map((line) => {
        const [label, seats, category = 'standard'] = line.split(/\s+/);
        return { label, seats: Number(seats), category };
      });
      const screen = await post(`/api/v1/theaters/${data.get('theater_id')}/screens`, { name: data.get('name'), rows });
      say(`Screen "${screen.name}" created with ${screen.seats?.length ?? screen.screen?.capacity ?? ''} seats`);
      theaterSelects[1].value = data.get('theater_id');
      await loadScreens();
    }),
    form('New showtime', [
      field('Movie', movieSelect),
      field('Theater', theaterSelects[1]),
      field('Screen', screenSelect),
      field('Starts at (your local time)', h('input', { name: 'starts_at', type: 'datetime-local', value: local, required: true })),
      field('Currency', h('input', { name: 'currency', value: 'EUR', maxlength: '3', required: true })),
      priceBox,
    ], 'Create showtime', async (data) => {
      const prices = {};
      for (const [k, v] of data.entries()) if (k.startsWith('price:')) prices[k.slice(6)] = Math.round(Number(v) * 100);
      const st = await post('/api/v1/showtimes', {
        movie_id: data.get('movie_id'),
        screen_id: data.get('screen_id'),
        starts_at: new Date(String(data.get('starts_at'))).toISOString(),
        prices,
        currency: String(data.get('currency')).toUpperCase(),
      });
      say(`Showtime created for ${when(st.starts_at)}`);
      main.querySelector('#created')?.remove();
      main.append(h('p', { id: 'created' }, 'Created: ', h('a', { href: `#/showtime/${st.id}` }, `${st.movie_title} at ${when(st.starts_at)}`)));
    }),
  ));
  await refresh();
}

// ---------------------------------------------------------------------------------------------
// The door: type or paste a ticket code or signed ticket (a scanner that types and presses
// Enter works the same); each scan says at once whether to let the person in.

const GATE = 'seatgate.gate';

async function doorView() {
  main.append(h('h1', {}, 'Door'));
  const s = session();
  const role = s?.user.role;
  if (role !== 'door' && role !== 'admin') {
    main.append(h('p', {}, 'This page is for door staff. '), s ? h('p', {}, 'Ask an admin to give your account the door role.') : needLogin('with a door staff account.'));
    return;
  }
  const ticket = h('input', { name: 'ticket', autocomplete: 'off', autocapitalize: 'characters', spellcheck: 'false', required: true });
  const gate = h('input', { name: 'gate', value: localStorage.getItem(GATE) || '', maxlength: '64' });
  const result = h('section', { class: 'door-result card', 'data-testid': 'door-result', 'aria-live': 'assertive', hidden: true });
  const history = h('ol', { class: 'door-history', 'aria-label': 'Recent scans' });

  function show(outcome, headline, detail) {
    result.hidden = false;
    result.dataset.outcome = outcome;
    result.replaceChildren(h('h2', {}, headline), detail ? h('p', {}, detail) : null);
    history.prepend(h('li', {}, `${new Date().toLocaleTimeString()} · ${headline}${detail ? ` · ${detail}` : ''}`));
    while (history.children.length > 10) history.lastChild.remove();
  }

  const scanForm = form('Check in a ticket', [
    field('Ticket code or QR content', ticket, 'Type the code (SG-XXXX-XXXX) or paste the scanned ticket, then press Enter'),
    field('Gate', gate, 'Shown to whoever scans this ticket again'),
  ], 'Check in', async () => {
    const gateName = gate.value.trim();
    localStorage.setItem(GATE, gateName);
    const body = { ticket: ticket.value.trim() };
    if (gateName) body.gate = gateName;
    try {
      const c = await post('/api/v1/checkins', body);
      show('checked_in', 'Checked in: let them in', `${c.seat_ids.length} seat${c.seat_ids.length === 1 ? '' : 's'}${c.gate ? ` · gate ${c.gate}` : ''}`);
    } catch (e) {
      if (!(e instanceof ApiError)) throw e;
      const p = e.problem;
      if (p.code === 'already_checked_in') {
        show('already_checked_in', 'Already checked in: do not let in', `First scanned ${when(p.checked_in_at)}${p.gate ? ` at gate ${p.gate}` : ''}`);
      } else if (p.code === 'ticket_cancelled') {
        show('ticket_cancelled', 'Cancelled ticket: do not let in', 'The booking was cancelled and refunded.');
      } else if (p.code === 'invalid_ticket') {
        show('invalid_ticket', 'Not a valid ticket', e.message);
      } else {
        throw e;
      }
    }
    ticket.value = '';
    ticket.focus();
  });
  main.append(scanForm, result, h('h2', {}, 'Recent scans'), history);
  ticket.focus();
}

// ---------------------------------------------------------------------------------------------

document.getElementById('logout').addEventListener('click', () => {
  signOut();
  say('Signed out');
  location.hash = '#/';
  route();
});
window.addEventListener('hashchange', () => {
  route();
  main.focus({ preventScroll: true });
});

// The stored account may be stale (an admin may have granted a role since login): refresh it
// before the first page is drawn.
async function start() {
  if (session()) {
    try {
      refreshUser(await get('/api/v1/me'));
    } catch {
      // Offline or signed out (401 signs out in api()): draw the page with what is known.
    }
  }
  route();
}
start();
