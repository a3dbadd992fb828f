// End-to-end test of the web front end: the real seatgate (all-in-one: API, payment worker,
// sweeper) on a free port with its own database, Redis prefix and AMQP namespace, and two
// headless Chromium users. User A (phone width) holds seats and B's map shows them held within
// a second, without a reload; A pays with tok_ok and B sees them sold; A gets a ticket code.
// A third user holds the 2 best seats, pays and sees the QR code; door staff check the ticket in
// once, and a second scan and a forged ticket are refused.
// Everything it started is stopped and dropped afterwards, pass or fail.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { artifacts, useStack } from './stack.mjs';

const stack = useStack({ name: 'live' });
const { run, admin, call, signUp } = stack;

const seat = (page, row, n) => page.locator(`button[aria-label^="Row ${row} seat ${n},"]`);

test('a hold by one user shows up live on another user\'s seat map, then the sale', async () => {
  const phone = await stack.browser.newContext({ viewport: { width: 375, height: 812 }, deviceScaleFactor: 2, hasTouch: true });
  const desktop = await stack.browser.newContext({ viewport: { width: 1100, height: 900 } });
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
  const context = await stack.browser.newContext({ viewport: { width: 375, height: 812 } });
  const page = await context.newPage();
  const problems = [];
  page.on('pageerror', (e) => problems.push(e.message));
  page.on('console', (m) => { if (m.type() === 'error') problems.push(m.text()); });
  page.setDefaultTimeout(10_000);
  try {
    await page.goto(`${stack.base}/#/login`);
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
    // The theater's screens load again, as a late answer to choosing the theater does: the
    // price fields are rendered anew (the old input is marked, then gone) and keep what was typed.
    const premium = showtimeForm.getByLabel('Price of premium (major units)');
    await premium.evaluate((el) => { el.dataset.rendered = 'before'; });
    await showtimeForm.getByLabel('Theater').dispatchEvent('change');
    await showtimeForm.locator('input[name="price:premium"]:not([data-rendered])').waitFor();
    assert.equal(await premium.inputValue(), '15.50', 'a price typed before the screens reloaded stays');
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
  const desktop = await stack.browser.newContext({ viewport: { width: 1100, height: 900 } });
  const phone = await stack.browser.newContext({ viewport: { width: 375, height: 812 }, deviceScaleFactor: 2, hasTouch: true });
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
    await carol.goto(`${stack.base}/#/showtime/${stack.showtime.id}`);
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
