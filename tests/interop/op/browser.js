// Drives Debian's headless Chromium with playwright-core for oidc-gateway's browser test:
//   node browser.js APP_URL GATEWAY_BASE USER
// Opens APP_URL (the gateway sends the browser to oidc-provider's login page), signs in as USER,
// reads what the echo upstream received, reloads, then logs out through oidc-provider's logout
// confirmation page back to GATEWAY_BASE/bye. Prints one JSON line with what it saw; exits
// non-zero on any failure.
import { chromium } from 'playwright-core';

const [appUrl, base, user] = process.argv.slice(2);

// No network beyond loopback on this machine: these flags stop Chromium's own background
// traffic (see the machine notes); a fresh profile per run.
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: [
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
  ],
});

// The echo upstream's page: "<code>GET /path</code>" and a table of the headers it received.
async function upstreamView(page) {
  const request = await page.locator('code').first().textContent();
  const rows = await page.$$eval('tr', (trs) => trs.map((tr) => [...tr.cells].map((c) => c.textContent)));
  const headers = Object.fromEntries(rows.filter((r) => r.length === 2).map(([k, v]) => [k.toLowerCase(), v]));
  return {
    path: request.split(' ')[1],
    sub: headers['x-auth-sub'],
    name: headers['x-auth-name'],
    cookie_header: headers.cookie ?? null,
  };
}

const report = {};
try {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.setDefaultTimeout(15000);

  await page.goto(appUrl);
  // oidc-provider's development login page.
  await page.locator('input[name="login"]').fill(user);
  await page.locator('input[name="password"]').fill('any password');
  await Promise.all([
    page.waitForURL((u) => u.href.startsWith(base)),
    page.locator('button[type="submit"]').click(),
  ]);
  await page.waitForLoadState('load');
  report.first = await upstreamView(page);

  await page.reload();
  report.reload = await upstreamView(page);

  const cookies = await context.cookies(base);
  report.cookies = Object.fromEntries(cookies.map((c) => [c.name, {
    httpOnly: c.httpOnly, secure: c.secure, sameSite: c.sameSite, path: c.path, size: c.value.length,
  }]));

  await page.goto(`${base}/oauth2/logout?rd=/bye`);
  // oidc-provider's RP-initiated logout confirmation.
  await Promise.all([
    page.waitForURL(`${base}/bye`),
    page.locator('button[name="logout"][value="yes"], button[value="yes"]').first().click(),
  ]);
  const after = await context.cookies(base);
  report.after_logout = {
    url: page.url(),
    session_cookies: after.filter((c) => c.name.startsWith('oidc_session') && !c.name.includes('_login_')).length,
  };
  process.stdout.write(`${JSON.stringify(report)}\n`);
} catch (e) {
  process.stderr.write(`${e.stack}\nso far: ${JSON.stringify(report)}\n`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
