// Drives Debian's headless Chromium with playwright-core for oidc-gateway's browser test:
//   node browser.js APP_URL GATEWAY_BASE USER OTHER_ORIGIN
// Opens APP_URL (the gateway sends the browser to oidc-provider's login page), signs in as USER,
// reads what the echo upstream received, reloads, calls the gateway's CORS route from a page on
// OTHER_ORIGIN (fetch with credentials, as a single-page app does), then logs out through oidc-provider's logout
// confirmation page back to GATEWAY_BASE/bye. Prints one JSON line with what it saw; exits
// non-zero on any failure.
import { chromium } from 'playwright-core';

const [appUrl, base, user, otherOrigin] = process.argv.slice(2);

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

  // A page of another origin: a PUT with a JSON body is not a "simple" request, so Chromium
  // asks the gateway first (preflight), then sends it with the session cookies.
  await page.goto(`${otherOrigin}/spa`);
  report.cors = await page.evaluate(async (gateway) => {
    const r = await fetch(`${gateway}/spa-api/records`, {
      method: 'PUT',
      credentials: 'include',
      headers: { 'content-type': 'application/json' },
      body: '{"note":"from another origin"}',
    });
    const seen = await r.json();
    const sub = seen.headers.find(([k]) => k === 'x-auth-sub');
    return {
      status: r.status,
      method: seen.method,
      sub: sub ? sub[1] : null,
    };
  }, base);
  report.cors_without_route_cors = await page.evaluate(async (gateway) => {
    try {
      await fetch(`${gateway}/app/records`, {
        method: 'PUT',
        credentials: 'include',
        headers: { 'content-type': 'application/json' },
        body: '{}',
      });
      return 'readable';
    } catch (e) {
      return 'blocked';
    }
  }, base);

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
