// End-to-end test of the waiting room: the real seatgate (all-in-one, so its admitter runs)
// and two headless Chromium users in the queue of a sale admitting one user per minute. Alice,
// first in line, is admitted first and her page opens the seat map by itself; Bob, second,
// watches his place move from 2 to 1 without a reload. The admin's view of the sale shows the
// counts. Everything it started is stopped and dropped afterwards, pass or fail.

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
const dbName = `seatgate_browser_queue_${run}`;
const prefix = `browserq${run}`;
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
    if (serverExit) throw new Error(`seatgate exited (${serverExit}) while waiting for ${what}; see ${artifacts}/seatgate-queue.log`);
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
  const log = fs.openSync(path.join(artifacts, 'seatgate-queue.log'), 'w');
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
      SEATGATE_QUEUE_ADMIT_INTERVAL_MS: '100',
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


test('the first in line is admitted and sees the seat map; the second sees his place move', async () => {
  const ctx = await browser.newContext({ viewport: { width: 1000, height: 900 } });
  const phone = await browser.newContext({ viewport: { width: 375, height: 812 }, deviceScaleFactor: 2, hasTouch: true });
  const alice = await ctx.newPage();
  const bob = await phone.newPage();
  const adminPage = await (await browser.newContext({ viewport: { width: 1000, height: 900 } })).newPage();
  const problems = [];
  for (const page of [alice, bob, adminPage]) {
    page.on('pageerror', (e) => problems.push(e.message));
    page.on('console', (m) => { if (m.type() === 'error') problems.push(m.text()); });
  }
  try {
    // The sale is open, with a waiting room at one admission a minute, paused for now.
    const { access_token: token } = await call('POST', '/api/v1/auth/login', admin);
    const opensAt = new Date(Date.now() - 60_000).toISOString();
    await call('PUT', `/api/v1/showtimes/${showtime.id}/sale`, { opens_at: opensAt, queue: { admit_per_minute: 1, admission_minutes: 10 } }, token);
    await call('POST', `/api/v1/showtimes/${showtime.id}/queue/pause`, {}, token);

    await signUp(alice, 'Alice');
    await signUp(bob, 'Bob');
    // Choosing seats leads into the waiting room; Alice gets there first.
    for (const page of [alice, bob]) {
      await page.getByRole('link', { name: 'Choose seats' }).first().click();
      await page.getByRole('heading', { name: /^Waiting room/ }).waitFor();
      await page.getByTestId('queue-place').filter({ hasText: /You are number \d in line/ }).waitFor();
    }
    assert.equal(await alice.getByTestId('queue-place').textContent(), 'You are number 1 in line');
    assert.equal(await bob.getByTestId('queue-place').textContent(), 'You are number 2 in line');
    await bob.screenshot({ path: path.join(artifacts, 'waiting-room-phone.png'), fullPage: true });

    // Admission resumes: Alice's page opens the seat map; Bob moves up without a reload.
    const resumed = Date.now();
    await call('POST', `/api/v1/showtimes/${showtime.id}/queue/resume`, {}, token);
    await alice.getByText('Live: seats update as others book').waitFor({ timeout: 10_000 });
    await bob.getByTestId('queue-place').filter({ hasText: 'You are number 1 in line' }).waitFor({ timeout: 10_000 });
    console.log(`# admitted and moved up ${Date.now() - resumed} ms after resuming`);
    await bob.getByTestId('queue-detail').filter({ hasText: /Estimated wait: about/ }).waitFor();
    assert.match(alice.url(), new RegExp(`#/showtime/${showtime.id}$`));
    assert.match(bob.url(), /\/queue$/, 'Bob is still waiting');
    await alice.screenshot({ path: path.join(artifacts, 'waiting-room-admitted.png'), fullPage: true });

    // Alice can hold; the admin's view counts one waiting, one admitted, two seats held.
    await alice.locator('button[aria-label="Row A seat 1, standard, 12.00 EUR, available"]').click();
    await alice.locator('button[aria-label="Row A seat 2, standard, 12.00 EUR, available"]').click();
    const held = alice.waitForResponse((r) => r.url().endsWith('/holds') && r.request().method() === 'POST');
    await alice.getByRole('button', { name: 'Hold 2 seats' }).click();
    assert.equal((await held).status(), 201);
    await adminPage.goto(`${base}/#/login`);
    const login = adminPage.getByRole('form', { name: 'Log in' });
    await login.getByLabel('Email').fill(admin.email);
    await login.getByLabel('Password').fill(admin.password);
    await login.getByRole('button', { name: 'Log in' }).click();
    await adminPage.getByRole('heading', { name: 'Showtimes' }).waitFor();
    await adminPage.goto(`${base}/#/admin/sale/${showtime.id}`);
    const stats = adminPage.getByTestId('sale-stats');
    await stats.filter({ hasText: 'Seats held2' }).waitFor({ timeout: 10_000 });
    const text = await stats.textContent();
    assert.match(text, /Waiting1/);
    assert.match(text, /Admitted now1/);
    await adminPage.screenshot({ path: path.join(artifacts, 'admin-sale.png'), fullPage: true });
    assert.deepEqual(problems, [], 'no script errors or CSP violations');
  } catch (e) {
    for (const [name, page] of [['alice', alice], ['bob', bob], ['admin', adminPage]]) {
      await page.screenshot({ path: path.join(artifacts, `failure-queue-${name}.png`), fullPage: true }).catch(() => {});
    }
    throw e;
  }
});
