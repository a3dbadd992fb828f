// The set-up every browser test shares: the real seatgate (all-in-one: API, payment worker,
// sweeper, admitter) on a free port with its own database, Redis prefix and AMQP namespace, a
// showtime seeded through the API as an admin would, and headless Chromium. `useStack` registers
// the `before` and `after` hooks of the calling test file; `after` stops and drops everything
// `before` started, pass or fail.

import { before, after } from 'node:test';
import { spawn, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { chromium } from 'playwright-core';

export const root = path.resolve(import.meta.dirname, '..', '..');
export const artifacts = path.join(root, 'target', 'browser-artifacts');
const chromiumPath = process.env.CHROMIUM_PATH || '/usr/bin/chromium';

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

/**
 * The stack of one test file. `name` keeps its database, Redis prefix and log apart from the
 * other files'; `env` adds settings of seatgate's. The returned object's `base`, `showtime` and
 * `browser` are set once `before` has run.
 */
export function useStack({ name, env = {} }) {
  const run = randomBytes(6).toString('hex');
  const dbName = `seatgate_browser_${name}_${run}`;
  const prefix = `browser${name}${run}`;
  const logFile = path.join(artifacts, `seatgate-${name}.log`);
  let server = null;
  let serverExit = null;

  const stack = {
    run,
    admin: { email: `admin-${run}@seatgate.test`, password: 'admin-password-1' },
    base: '',
    browser: null,
    showtime: null,

    /** Polls `check` until it returns a truthy value or the deadline passes. */
    async until(what, check, ms = 60_000) {
      const deadline = Date.now() + ms;
      let last;
      while (Date.now() < deadline) {
        try {
          const value = await check();
          if (value) return value;
        } catch (e) {
          last = e;
        }
        if (serverExit) throw new Error(`seatgate exited (${serverExit}) while waiting for ${what}; see ${logFile}`);
        await new Promise((r) => setTimeout(r, 100));
      }
      throw new Error(`timed out waiting for ${what}${last ? `: ${last.message}` : ''}`);
    },

    /** One API call; a non-2xx answer throws with its status and body. */
    async call(method, urlPath, body, token) {
      const headers = { 'Content-Type': 'application/json' };
      if (token) headers.Authorization = `Bearer ${token}`;
      const res = await fetch(stack.base + urlPath, { method, headers, body: body ? JSON.stringify(body) : undefined });
      const data = await res.json().catch(() => null);
      if (!res.ok) throw new Error(`${method} ${urlPath}: ${res.status} ${JSON.stringify(data)}`);
      return data;
    },

    /** Signs a new user up through the page's form, as a buyer would. */
    async signUp(page, userName) {
      await page.goto(`${stack.base}/#/login`);
      const form = page.getByRole('form', { name: 'Sign up' });
      await form.getByLabel('Name').fill(userName);
      await form.getByLabel('Email').fill(`${userName.toLowerCase()}-${run}@example.com`);
      await form.getByLabel('Password').fill('user-password-1');
      await form.getByRole('button', { name: 'Create account' }).click();
      await page.getByRole('heading', { name: 'Showtimes' }).waitFor();
    },
  };

  before(async () => {
    fs.mkdirSync(artifacts, { recursive: true });
    if (!process.env.SEATGATE_BIN) {
      execFileSync('cargo', ['build', '--locked', '--bin', 'seatgate'], { cwd: root, stdio: 'inherit' });
    }
    const bin = process.env.SEATGATE_BIN || path.join(root, 'target', 'debug', 'seatgate');
    const port = await freePort();
    stack.base = `http://127.0.0.1:${port}`;
    const log = fs.openSync(logFile, 'w');
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
        SEATGATE_ADMIN_EMAIL: stack.admin.email,
        SEATGATE_ADMIN_PASSWORD: stack.admin.password,
        SEATGATE_JWT_SECRET: randomBytes(32).toString('hex'),
        SEATGATE_PAYMENT_LATENCY_MS: '300',
        SEATGATE_SWEEP_INTERVAL_SECS: '1',
        SEATGATE_LOG_FORMAT: 'json',
        ...env,
      },
    });
    server.on('exit', (code, signal) => { serverExit = signal || code; });
    await stack.until('/health/ready', async () => (await fetch(`${stack.base}/health/ready`)).ok);

    const { access_token: token } = await stack.call('POST', '/api/v1/auth/login', stack.admin);
    const movie = await stack.call('POST', '/api/v1/movies', { title: 'The Browser Test', duration_minutes: 110, genres: ['drama'] }, token);
    const theater = await stack.call('POST', '/api/v1/theaters', { name: 'Headless Cinema', city: 'Berlin', address: 'Main St 1' }, token);
    const screen = await stack.call('POST', `/api/v1/theaters/${theater.id}/screens`, {
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
    stack.showtime = await stack.call('POST', '/api/v1/showtimes', {
      movie_id: movie.id,
      screen_id: screen.id,
      starts_at: starts.toISOString().replace('.000', ''),
      prices: { standard: 1200, premium: 1650, vip: 2400 },
      currency: 'EUR',
    }, token);

    stack.browser = await chromium.launch({ executablePath: chromiumPath, args: ['--no-sandbox'] });
  });

  after(async () => {
    await stack.browser?.close().catch(() => {});
    if (server && serverExit === null) {
      server.kill('SIGTERM');
      await stack.until('seatgate to stop', () => serverExit !== null, 15_000).catch(() => server.kill('SIGKILL'));
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

  return stack;
}
