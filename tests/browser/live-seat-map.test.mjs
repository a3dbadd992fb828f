// End-to-end test of the web front end: the real seatgate (all-in-one: API, payment worker,
// sweeper) on a free port with its own database, Redis prefix and AMQP namespace, and two
// headless Chromium users. User A (phone width) holds seats and B's map shows them held within
// a second, without a reload; A pays with tok_ok and B sees them sold; A gets a ticket code.
// A third user holds the 2 best seats, pays and sees the QR code; door staff check the ticket in
// once, and a second scan and a forged ticket are refused.
// Everything it started is stopped and dropped afterwards, pass or fail.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { chromium } from 'playwright-core';

const root = path.resolve(import.meta.dirname, '..', '..');
const artifacts = path.join(root, 'target', 'browser-artifacts');
const chromiumPath = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const run = randomBytes(6).toString('hex');
const dbName = `seatgate_browser_${run}`;
const prefix = `browser${run}`;
const admin = { email: `admin-${run}@seatgate.test`, password: 'admin-password-1' };

let server = null;
let serverExit = null;
let base = '';
let browser = null;
let showtime = null;

async function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** Polls `check` until it returns a truthy value or the deadline passes. */
async function until(what, check, ms = 60_000) {
  const deadline = Date.now() + ms;
  let last;
  while (Date.now() < deadline) {
    try {
      const value = await check();
      if (value) return value;
    } catch (e) {
      last = e;
    }
    if (serverExit) throw new Error(`seatgate exited (${serverExit}) while waiting for ${what}; see ${artifacts}/seatgate.log`);
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${last.message}` : ''}`);
}

async function call(method, urlPath, body, token) {
  const headers = { 'Content-Type': 'application/json' };
  if (token) headers.Authorization = `Bearer ${token}`;
  const res = await fetch(base + urlPath, { method, headers, body: body ? JSON.stringify(body) : undefined });
  const data = await res.json().catch(() => null);
  if (!res.ok) throw new Error(`${method} ${urlPath}: ${res.status} ${JSON.stringify(data)}`);
  return data;
}

before(async () => {
  fs.mkdirSync(artifacts, { recursive: true });
  if (!process.env.SEATGATE_BIN) {
    execFileSync('cargo', ['build', '--locked', '--bin', 'seatgate'], { cwd: root, stdio: 'inherit' });
  }
  const bin = process.env.SEATGATE_BIN || path.join(root, 'target', 'debug', 'seatgate');
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  const log = fs.openSync(path.join(artifacts, 'seatgate.log'), 'w');
  server = spawn(bin, ['all-in-one'], {
    cwd: root,
    stdio: ['ignore', log, log],
    env: {
      ...process.env,
      SEATGATE_LISTEN: `127.0.0.1:${port}`,
      SEATGATE_DATABASE_URL: `postgres://postgres@127.0.0.1:5432/${dbName}`,
      SEATGATE_REDIS_KEY_PREFIX: prefix,
      SEATGATE_AMQP_NAMESPACE: prefix,
      SEATGATE_AMQP_QUEUE_EXPIRES_MS: '300000',
      SEATGATE_ADMIN_EMAIL: admin.email,
      SEATGATE_ADMIN_PASSWORD: admin.password,
      SEATGATE_JWT_SECRET: randomBytes(32).toString('hex'),
      SEATGATE_PAYMENT_LATENCY_MS: '300',
      SEATGATE_SWEEP_INTERVAL_SECS: '1',
      SEATGATE_LOG_FORMAT: 'json',
    },
  });
  server.on('exit', (code, signal) => { serverExit = signal || code; });
  await until('/health/ready', async () => (await fetch(`${base}/health/ready`)).ok);

  // Seed a showtime through the API, as an admin would.
  const { access_token: token } = await call('POST', '/api/v1/auth/login', admin);
  const movie = await call('POST', '/api/v1/movies', { title: 'The Browser Test', duration_minutes: 110, genres: ['drama'] }, token);
  const theater = await call('POST', '/api/v1/theaters', { name: 'Headless Cinema', city: 'Berlin', address: 'Main St 1' }, token);
  const screen = await call('POST', `/api/v1/theaters/${theater.id}/screens`, {
    name: 'Screen 1',
    rows: [
      { label: 'A', seats: 8, category: 'standard' },
      { label: 'B', seats: 8, category: 'standard' },
      { label: 'C', seats: 8, category: 'premium' },
      { label: 'D', seats: 6, category: 'vip' },
    ],
  }, token);
  const starts = new Date(Date.now() + 48 * 3600 * 1000);
  starts.setUTCMinutes(0, 0, 0);
  showtime = await call('POST', '/api/v1/showtimes', {
    movie_id: movie.id,
    screen_id: screen.id,
    starts_at: starts.toISOString().replace('.000', ''),
    prices: { standard: 1200, premium: 1650, vip: 2400 },
    currency: 'EUR',
  }, token);

  browser = await chromium.launch({ executablePath: chromiumPath, args: ['--no-sandbox'] });
});

after(async () => {
  await browser?.close().catch(() => {});
  if (server && serverExit === null) {
    server.kill('SIGTERM');
    await until('seatgate to stop', () => serverExit !== null, 15_000).catch(() => server.kill('SIGKILL'));
  }
  try {
    execFileSync('psql', ['-h', '127.0.0.1', '-U', 'postgres', '-d', 'postgres', '-qc', `drop database if exists ${dbName} with (force)`], { stdio: 'inherit' });
  } catch (e) {
    console.error(`could not drop ${dbName}: ${e.message}`);
  }
  try {
    const keys = execFileSync('redis-cli', ['--scan', '--pattern', `${prefix}:*`]).toString().split('\n').filter(Boolean);
    for (let i = 0; i < keys.length; i += 100) execFileSync('redis-cli', ['del', ...keys.slice(i, i + 100)]);
  } catch (e) {
    console.error(`could not delete Redis keys ${prefix}:*: ${e.message}`);
  }
});

async function signUp(page, name) {
  await page.goto(`${base}/#/login`);
  const form = page.getByRole('form', { name: 'Sign up' });
  await form.getByLabel('Name').fill(name);
  await form.getByLabel('Email').fill(`${name.toLowerCase()}-${run}@example.com`);
  await form.getByLabel('Password').fill('user-password-1');
  await form.getByRole('button', { name: 'Create account' }).click();
  await page.getByRole('heading', { name: 'Showtimes' }).waitFor();
}

const seat = (page, row, n) => page.locator(`button[aria-label^="Row ${row} seat ${n},"]`);

test('a hold by one user shows up live on another user\'s seat map, then the sale', async () => {
  const phone = await browser.newContext({ viewport: { width: 375, height: 812 }, deviceScaleFactor: 2, hasTouch: true });
  const desktop = await browser.newContext({ viewport: { width: 1100, height: 900 } });
  const alice = await phone.newPage();
  const bob = await desktop.newPage();
  const problems = [];
  for (const page of [alice, bob]) {
    page.on('pageerror', (e) => problems.push(e.message));
    page.on('console', (m) => { if (m.type() === 'error') problems.push(m.text()); });
  }
  try {
    await signUp(alice, 'Alice');
    await signUp(bob, 'Bob');

    // Both open the showtime from the list and see the live map.
    for (const page of [alice, bob]) {
      await page.getByRole('link', { name: 'Choose seats' }).first().click();
      await page.getByText('Live: seats update as others book').waitFor();
    }
    assert.equal(await seat(bob, 'A', 3).getAttribute('aria-label'), 'Row A seat 3, standard, 12.00 EUR, available');
    assert.equal(await seat(bob, 'D', 1).getAttribute('aria-label'), 'Row D seat 1, vip, 24.00 EUR, available');

    // Keyboard: a seat is a real button, Space toggles it.
    await seat(bob, 'B', 5).focus();
    await bob.keyboard.press('Space');
    assert.equal(await seat(bob, 'B', 5).getAttribute('aria-pressed'), 'true');
    await bob.keyboard.press('Enter');
    assert.equal(await seat(bob, 'B', 5).getAttribute('aria-pressed'), 'false');

    // Alice (phone) selects two seats and holds them.
    await seat(alice, 'A', 3).click();
    await seat(alice, 'A', 4).click();
    assert.equal(await seat(alice, 'A', 3).getAttribute('aria-pressed'), 'true');
    await alice.getByText('Selected A3, A4 · 24.00 EUR').waitFor();
    const held = alice.waitForResponse((r) => r.url().endsWith('/holds') && r.request().method() === 'POST');
    await alice.getByRole('button', { name: 'Hold 2 seats' }).click();
    assert.equal((await held).status(), 201);
    const heldAt = Date.now();

    // Bob sees them held within a second, without a reload.
    await bob.locator('button[aria-label="Row A seat 3, standard, 12.00 EUR, held"]').waitFor({ timeout: 1000 });
    await bob.locator('button[aria-label="Row A seat 4, standard, 12.00 EUR, held"]').waitFor({ timeout: 1000 });
    const delayMs = Date.now() - heldAt;
    assert.ok(delayMs <= 1000, `held after ${delayMs} ms`);
    console.log(`# hold seen by the other browser after ${delayMs} ms`);
    await alice.getByText(/Held for you for [45]:\d\d/).waitFor();
    assert.match(await seat(alice, 'A', 3).getAttribute('aria-label'), /held by you$/);
    await bob.screenshot({ path: path.join(artifacts, 'seat-map-held-desktop.png'), fullPage: true });
    await alice.screenshot({ path: path.join(artifacts, 'seat-map-held-phone.png'), fullPage: true });

    // Bob cannot take a held seat (it is aria-disabled, yet stays focusable for screen readers).
    await seat(bob, 'A', 3).focus();
    await bob.keyboard.press('Space');
    assert.equal(await seat(bob, 'A', 3).getAttribute('aria-pressed'), 'false');

    // Alice pays with the test card that succeeds; Bob sees the seats sold.
    await alice.getByLabel('Test card that pays').check();
    await alice.getByRole('button', { name: 'Pay 24.00 EUR' }).click();
    await bob.locator('button[aria-label="Row A seat 3, standard, 12.00 EUR, sold"]').waitFor({ timeout: 15_000 });
    await bob.locator('button[aria-label="Row A seat 4, standard, 12.00 EUR, sold"]').waitFor({ timeout: 1000 });
    const code = await alice.getByTestId('ticket-code').textContent({ timeout: 15_000 });
    assert.match(code, /^SG-/);
    await bob.screenshot({ path: path.join(artifacts, 'seat-map-sold-desktop.png'), fullPage: true });
    await alice.screenshot({ path: path.join(artifacts, 'seat-map-sold-phone.png'), fullPage: true });

    // The booking is in Alice's list, with its cancel button.
    await alice.getByRole('link', { name: 'See my bookings' }).click();
    await alice.locator('main').getByText(code, { exact: true }).waitFor();
    await alice.getByRole('button', { name: `Cancel booking ${code}` }).waitFor();
    await alice.screenshot({ path: path.join(artifacts, 'my-bookings-phone.png'), fullPage: true });

    // Nothing overflows the phone's width.
    const overflow = await alice.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `the page is ${overflow}px wider than the phone`);
    assert.deepEqual(problems, [], 'no script errors or CSP violations in the console');
  } catch (e) {
    await alice.screenshot({ path: path.join(artifacts, 'failure-live-a.png'), fullPage: true }).catch(() => {});
    await bob.screenshot({ path: path.join(artifacts, 'failure-live-b.png'), fullPage: true }).catch(() => {});
    throw e;
  } finally {
    await phone.close();
    await desktop.close();
  }
});

test('an admin creates a movie, theater, screen layout and showtime from the admin page', async () => {
  const context = await browser.newContext({ viewport: { width: 375, height: 812 } });
  const page = await context.newPage();
  const problems = [];
  page.on('pageerror', (e) => problems.push(e.message));
  page.on('console', (m) => { if (m.type() === 'error') problems.push(m.text()); });
  page.setDefaultTimeout(10_000);
  try {
    await page.goto(`${base}/#/login`);
    const login = page.getByRole('form', { name: 'Log in' });
    await login.getByLabel('Email').fill(admin.email);
    await login.getByLabel('Password').fill(admin.password);
    await login.getByRole('button', { name: 'Log in' }).click();
    await page.getByRole('heading', { name: 'Showtimes' }).waitFor();
    await page.getByRole('link', { name: 'Admin' }).click();
    await page.getByRole('heading', { name: 'Admin' }).waitFor();

    const movie = page.getByRole('form', { name: 'New movie' });
    await movie.getByLabel('Title').fill(`Admin Made ${run}`);
    await movie.getByRole('button', { name: 'Create movie' }).click();
    await page.getByRole('status').getByText(`Movie "Admin Made ${run}" created`).waitFor();

    const theater = page.getByRole('form', { name: 'New theater' });
    await theater.getByLabel('Name').fill(`Form Theater ${run}`);
    await theater.getByLabel('City').fill('Hamburg');
    await theater.getByLabel('Address').fill('Harbour 2');
    await theater.getByRole('button', { name: 'Create theater' }).click();
    await page.getByRole('status').getByText(`Theater "Form Theater ${run}" created`).waitFor();

    const screen = page.getByRole('form', { name: 'New screen and seat layout' });
    await screen.getByLabel('Theater').selectOption({ label: `Form Theater ${run}, Hamburg` });
    await screen.getByLabel('Screen name').fill('Small');
    await screen.getByLabel('Rows').fill('A 5 standard\nB 4 premium');
    await screen.getByRole('button', { name: 'Create screen' }).click();
    await page.getByRole('status').getByText('Screen "Small" created').waitFor();

    const showtimeForm = page.getByRole('form', { name: 'New showtime' });
    await showtimeForm.getByLabel('Movie').selectOption({ label: `Admin Made ${run}` });
    await showtimeForm.getByLabel('Theater').selectOption({ label: `Form Theater ${run}, Hamburg` });
    await showtimeForm.getByLabel('Screen').selectOption({ label: 'Small (9 seats)' });
    await showtimeForm.getByLabel('Price of premium (major units)').fill('15.50');
    await showtimeForm.getByRole('button', { name: 'Create showtime' }).click();
    await page.screenshot({ path: path.join(artifacts, 'admin-phone.png'), fullPage: true });
    await page.getByRole('link', { name: new RegExp(`^Admin Made ${run} at`) }).click();

    await page.getByText('Live: seats update as others book').waitFor();
    assert.equal(await page.locator('button[data-seat]').count(), 9);
    assert.equal(await seat(page, 'B', 4).getAttribute('aria-label'), 'Row B seat 4, premium, 15.50 EUR, available');
    assert.deepEqual(problems, [], 'no script errors or CSP violations in the console');
  } catch (e) {
    await page.screenshot({ path: path.join(artifacts, 'failure-admin.png'), fullPage: true }).catch(() => {});
    throw e;
  } finally {
    await context.close();
  }
});

test('a buyer holds the 2 best seats and pays; door staff let the ticket in once, with its QR code shown', async () => {
  const desktop = await browser.newContext({ viewport: { width: 1100, height: 900 } });
  const phone = await browser.newContext({ viewport: { width: 375, height: 812 }, deviceScaleFactor: 2, hasTouch: true });
  const carol = await desktop.newPage();
  const dave = await phone.newPage();
  const problems = [];
  // The door's refusals (409 already checked in, 422 not a ticket) are answers this test asks
  // for; Chromium logs every 4xx fetch as a console error, so those two are expected there.
  const expected = (page, text) => page === dave && /status of (409|422) /.test(text);
  for (const page of [carol, dave]) {
    page.on('pageerror', (e) => problems.push(e.message));
    page.on('console', (m) => { if (m.type() === 'error' && !expected(page, m.text())) problems.push(m.text()); });
    page.setDefaultTimeout(15_000);
  }
  try {
    // Carol asks for the 2 best seats: the middle of the best middle row (C, premium).
    await signUp(carol, 'Carol');
    await carol.goto(`${base}/#/showtime/${showtime.id}`);
    await carol.getByText('Live: seats update as others book').waitFor();
    const best = carol.getByRole('form', { name: 'Best seats' });
    await best.getByLabel('Seats together').fill('2');
    const held = carol.waitForResponse((r) => r.url().endsWith('/holds') && r.request().method() === 'POST');
    await best.getByRole('button', { name: 'Hold 2 best seats' }).click();
    assert.equal((await held).status(), 201);
    await carol.locator('button[aria-label="Row C seat 4, premium, 16.50 EUR, held by you"]').waitFor();
    await carol.locator('button[aria-label="Row C seat 5, premium, 16.50 EUR, held by you"]').waitFor();
    await carol.screenshot({ path: path.join(artifacts, 'best-seats-held-desktop.png'), fullPage: true });
    await carol.getByRole('button', { name: 'Pay 33.00 EUR' }).click();
    const code = await carol.getByTestId('ticket-code').textContent();
    assert.match(code, /^SG-/);

    // Her bookings show the ticket's QR code, drawn from the signed ticket.
    await carol.getByRole('link', { name: 'See my bookings' }).click();
    const qr = carol.getByRole('img', { name: `QR code of ticket ${code}` });
    await qr.waitFor();
    await carol.waitForFunction((alt) => {
      const img = [...document.querySelectorAll('img')].find((i) => i.alt === alt);
      return img && img.complete && img.naturalWidth > 0;
    }, `QR code of ticket ${code}`);
    await carol.screenshot({ path: path.join(artifacts, 'my-bookings-qr-desktop.png'), fullPage: true });

    // Dave signs up; an admin makes him door staff; after a reload his menu has the door page.
    await signUp(dave, 'Dave');
    const { access_token: adminToken } = await call('POST', '/api/v1/auth/login', admin);
    const { user } = await call('POST', '/api/v1/auth/login', { email: `dave-${run}@example.com`, password: 'user-password-1' });
    await call('PUT', `/api/v1/users/${user.id}/role`, { role: 'door' }, adminToken);
    await dave.reload();
    await dave.getByRole('link', { name: 'Door' }).click();
    const scan = dave.getByRole('form', { name: 'Check in a ticket' });
    await scan.getByLabel('Gate').fill('north-1');

    // First scan (the code typed in lower case, then Enter): let in.
    await scan.getByLabel('Ticket code or QR content').fill(code.toLowerCase());
    await scan.getByLabel('Ticket code or QR content').press('Enter');
    const result = dave.getByTestId('door-result');
    await dave.locator('[data-testid="door-result"][data-outcome="checked_in"]').waitFor();
    assert.match(await result.textContent(), /Checked in: let them in.*2 seats · gate north-1/);
    await dave.screenshot({ path: path.join(artifacts, 'door-checked-in-phone.png'), fullPage: true });

    // Second scan of the same ticket: refused, saying where it was first used.
    await scan.getByLabel('Ticket code or QR content').fill(code);
    await scan.getByRole('button', { name: 'Check in' }).click();
    await dave.locator('[data-testid="door-result"][data-outcome="already_checked_in"]').waitFor();
    assert.match(await result.textContent(), /Already checked in: do not let in.*at gate north-1/);

    // Garbage is refused as not a ticket.
    await scan.getByLabel('Ticket code or QR content').fill('SGT1.forged.AAAA.BBBB');
    await scan.getByRole('button', { name: 'Check in' }).click();
    await dave.locator('[data-testid="door-result"][data-outcome="invalid_ticket"]').waitFor();
    await dave.screenshot({ path: path.join(artifacts, 'door-refused-phone.png'), fullPage: true });

    const overflow = await dave.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `the door page is ${overflow}px wider than the phone`);
    assert.deepEqual(problems, [], 'no script errors or CSP violations in the console');
  } catch (e) {
    await carol.screenshot({ path: path.join(artifacts, 'failure-best-door-carol.png'), fullPage: true }).catch(() => {});
    await dave.screenshot({ path: path.join(artifacts, 'failure-best-door-dave.png'), fullPage: true }).catch(() => {});
    throw e;
  } finally {
    await desktop.close();
    await phone.close();
  }
});
