// End-to-end test of the waiting room: the real seatgate (all-in-one, so its admitter runs)
// and two headless Chromium users in the queue of a sale admitting one user per minute. Alice,
// first in line, is admitted first and her page opens the seat map by itself; Bob, second,
// watches his place move from 2 to 1 without a reload. The admin's view of the sale shows the
// counts. Everything it started is stopped and dropped afterwards, pass or fail.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { artifacts, useStack } from './stack.mjs';

const stack = useStack({ name: 'queue', env: { SEATGATE_QUEUE_ADMIT_INTERVAL_MS: '100' } });
const { admin, call, signUp } = stack;

test('the first in line is admitted and sees the seat map; the second sees his place move', async () => {
  const ctx = await stack.browser.newContext({ viewport: { width: 1000, height: 900 } });
  const phone = await stack.browser.newContext({ viewport: { width: 375, height: 812 }, deviceScaleFactor: 2, hasTouch: true });
  const alice = await ctx.newPage();
  const bob = await phone.newPage();
  const adminPage = await (await stack.browser.newContext({ viewport: { width: 1000, height: 900 } })).newPage();
  const problems = [];
  for (const page of [alice, bob, adminPage]) {
    page.on('pageerror', (e) => problems.push(e.message));
    page.on('console', (m) => { if (m.type() === 'error') problems.push(m.text()); });
  }
  try {
    // The sale is open, with a waiting room at one admission a minute, paused for now.
    const { access_token: token } = await call('POST', '/api/v1/auth/login', admin);
    const opensAt = new Date(Date.now() - 60_000).toISOString();
    await call('PUT', `/api/v1/showtimes/${stack.showtime.id}/sale`, { opens_at: opensAt, queue: { admit_per_minute: 1, admission_minutes: 10 } }, token);
    await call('POST', `/api/v1/showtimes/${stack.showtime.id}/queue/pause`, {}, token);

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
    await call('POST', `/api/v1/showtimes/${stack.showtime.id}/queue/resume`, {}, token);
    await alice.getByText('Live: seats update as others book').waitFor({ timeout: 10_000 });
    await bob.getByTestId('queue-place').filter({ hasText: 'You are number 1 in line' }).waitFor({ timeout: 10_000 });
    console.log(`# admitted and moved up ${Date.now() - resumed} ms after resuming`);
    await bob.getByTestId('queue-detail').filter({ hasText: /Estimated wait: about/ }).waitFor();
    assert.match(alice.url(), new RegExp(`#/showtime/${stack.showtime.id}$`));
    assert.match(bob.url(), /\/queue$/, 'Bob is still waiting');
    await alice.screenshot({ path: path.join(artifacts, 'waiting-room-admitted.png'), fullPage: true });

    // Alice can hold; the admin's view counts one waiting, one admitted, two seats held.
    await alice.locator('button[aria-label="Row A seat 1, standard, 12.00 EUR, available"]').click();
    await alice.locator('button[aria-label="Row A seat 2, standard, 12.00 EUR, available"]').click();
    const held = alice.waitForResponse((r) => r.url().endsWith('/holds') && r.request().method() === 'POST');
    await alice.getByRole('button', { name: 'Hold 2 seats' }).click();
    assert.equal((await held).status(), 201);
    await adminPage.goto(`${stack.base}/#/login`);
    const login = adminPage.getByRole('form', { name: 'Log in' });
    await login.getByLabel('Email').fill(admin.email);
    await login.getByLabel('Password').fill(admin.password);
    await login.getByRole('button', { name: 'Log in' }).click();
    await adminPage.getByRole('heading', { name: 'Showtimes' }).waitFor();
    await adminPage.goto(`${stack.base}/#/admin/sale/${stack.showtime.id}`);
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
