// Browser check of the audience dashboard, run by .ci/run.
//
// Usage: node .ci/dashboard.mjs http://127.0.0.1:PORT [screenshot.png]
//
// 1. Seeds the server through its GraphQL API with the key in
//    GRAPHQL_AUTHORIZATION ("Bearer <key>", with the admin, write and stats
//    scopes): three official accounts and a mini program, and accounts that
//    follow them in known combinations, some without a UnionID and some no
//    longer following. It checks that `audience` counts them as seeded.
// 2. Opens /dashboard in headless Chromium with every request to another
//    host blocked (and fails if the page tried one), pastes the key as a
//    user would, and checks that the big numbers show what the API returns,
//    that every chart drew on its canvas, that the followers chart names the
//    official accounts (and not the mini program), that the page asks the
//    API once and again only on Refresh, that it goes live (the
//    `accountEvents` subscription on /graphql/ws) and redraws by itself when
//    a follower is added through the API, and that the key is kept across a
//    reload. No Content-Security-Policy violation or console error may occur.
// 3. In fresh browsers: the key the playground keeps is reused; a wrong key
//    and a key without the `stats` scope are explained on the page.
//
// Writes a full-page screenshot (default target/ci-dashboard.png) and exits
// 1 on any failure, printing the page's text and console errors.

import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { chromium } from 'playwright-core';

const base = (process.argv[2] || '').replace(/\/+$/, '');
const screenshot = process.argv[3] || 'target/ci-dashboard.png';
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const AUTHORIZATION = process.env.GRAPHQL_AUTHORIZATION || '';
const STEP_TIMEOUT_MS = 30_000;
const TOTAL_TIMEOUT_MS = 240_000;
const LOCAL_HOSTS = new Set(['127.0.0.1', 'localhost', '[::1]']);

if (!/^https?:\/\//.test(base)) {
  console.error('usage: node .ci/dashboard.mjs http://127.0.0.1:PORT [screenshot.png]');
  process.exit(2);
}

// ---- the seeded audience -------------------------------------------------

const NEWS = { appid: 'wxd5b0a1c2e3f40001', name: 'Brand news' };
const SERVICE = { appid: 'wxd5b0a1c2e3f40002', name: 'Customer service' };
const MEMBERS = { appid: 'wxd5b0a1c2e3f40003', name: 'Members club' };
const OFFICIAL = [NEWS, SERVICE, MEMBERS];
const MINI = { appid: 'wxd5b0a1c2e3f40009', name: 'Store finder' };

// How many people (with a UnionID) follow exactly each set of accounts.
const GROUPS = [
  { apps: [NEWS], people: 9 },
  { apps: [SERVICE], people: 6 },
  { apps: [MEMBERS], people: 4 },
  { apps: [NEWS, SERVICE], people: 5 },
  { apps: [NEWS, MEMBERS], people: 3 },
  { apps: [SERVICE, MEMBERS], people: 2 },
  { apps: [NEWS, SERVICE, MEMBERS], people: 4 },
];
// Follows whose UnionID is not known, per account.
const UNLINKED = [[NEWS, 2], [SERVICE, 1]];

/** The accounts to upsert, and what `audience` must then say about the official accounts. */
function seed() {
  const rows = [];
  let n = 0;
  for (const group of GROUPS) {
    for (let i = 0; i < group.people; i++) {
      n += 1;
      const unionid = `oDash${String(n).padStart(4, '0')}UnionSeed`;
      for (const app of group.apps) {
        rows.push({ appid: app.appid, openid: `oDash${app.appid.slice(-1)}P${n}`, unionid, following: true });
      }
      // Some also have accounts that do not count: a mini program account,
      // and a follow of another official account that they have ended.
      if (n % 3 === 0) rows.push({ appid: MINI.appid, openid: `oDashMiniP${n}`, unionid });
      const ended = OFFICIAL.find((app) => !group.apps.includes(app));
      if (n % 4 === 0 && ended) {
        rows.push({ appid: ended.appid, openid: `oDash${ended.appid.slice(-1)}P${n}`, unionid, following: false });
      }
    }
  }
  for (const [app, count] of UNLINKED) {
    for (let i = 1; i <= count; i++) {
      rows.push({ appid: app.appid, openid: `oDash${app.appid.slice(-1)}Unlinked${i}`, following: true });
    }
  }

  const linked = (app) => GROUPS.filter((g) => g.apps.includes(app)).reduce((s, g) => s + g.people, 0);
  const unlinked = (app) => (UNLINKED.find(([a]) => a === app) || [null, 0])[1];
  const linkedPeople = GROUPS.reduce((s, g) => s + g.people, 0);
  const unlinkedFollowers = UNLINKED.reduce((s, [, c]) => s + c, 0);
  const both = (a, b) => GROUPS.filter((g) => g.apps.includes(a) && g.apps.includes(b))
    .reduce((s, g) => s + g.people, 0);
  const expected = {
    apps: OFFICIAL.map((app) => ({
      appid: app.appid,
      followers: linked(app) + unlinked(app),
      linkedFollowers: linked(app),
      unlinkedFollowers: unlinked(app),
    })),
    distinctPeople: { atLeast: linkedPeople, atMost: linkedPeople + unlinkedFollowers },
    linkedPeople,
    unlinkedFollowers,
    pairs: [[NEWS, SERVICE], [NEWS, MEMBERS], [SERVICE, MEMBERS]]
      .map(([a, b]) => ({ appids: [a.appid, b.appid], people: both(a, b) })),
    combinations: GROUPS.map((g) => ({ appids: g.apps.map((a) => a.appid), people: g.people })),
  };
  return { rows, expected };
}

/** The parts of an Audience the seed determines, in an order of their own. */
function normalise(audience) {
  const set = (appids) => [...appids].sort().join('+');
  const counts = (list) => Object.fromEntries(list.map((x) => [set(x.appids), x.people]).sort());
  return {
    apps: audience.apps.map((a) => [a.appid, a.followers, a.linkedFollowers, a.unlinkedFollowers]),
    atLeast: audience.distinctPeople.atLeast,
    atMost: audience.distinctPeople.atMost,
    linkedPeople: audience.linkedPeople,
    unlinkedFollowers: audience.unlinkedFollowers,
    pairs: counts(audience.pairs),
    combinations: counts(audience.combinations),
  };
}

// ---- the API ---------------------------------------------------------------

function fail(message) {
  const error = new Error(message);
  error.checkFailure = true;
  return error;
}

async function graphql(query, variables = {}) {
  const response = await fetch(`${base}/graphql`, {
    method: 'POST',
    headers: {
      'Content-Type': 'application/json',
      Accept: 'application/graphql-response+json',
      Authorization: AUTHORIZATION,
    },
    body: JSON.stringify({ query, variables }),
  });
  const body = await response.json().catch(() => null);
  if (!body || body.errors || !body.data) {
    throw fail(`GraphQL request failed (HTTP ${response.status}): ${JSON.stringify(body).slice(0, 600)}\n` +
      `  query: ${query.replace(/\s+/g, ' ').slice(0, 160)}`);
  }
  return body.data;
}

// An AppSecret of the form WeChat issues (32 hexadecimal characters); the
// dashboard check never calls WeChat, so any such value serves.
function appSecret(appid) {
  const hex = appid.slice(2);
  return hex + hex;
}

async function seedServer() {
  const { rows, expected } = seed();
  const { apps } = await graphql('{ apps { appid } }');
  const known = new Set(apps.map((a) => a.appid));
  const register = [...OFFICIAL.map((a) => [a, 'OFFICIAL_ACCOUNT']), [MINI, 'MINI_PROGRAM']];
  for (const [app, kind] of register) {
    if (known.has(app.appid)) continue; // seeded by an earlier run against this server
    await graphql(
      'mutation($input: RegisterAppInput!) { registerApp(input: $input) { appid } }',
      { input: { appid: app.appid, kind, name: app.name, secret: appSecret(app.appid) } },
    );
  }
  const { upsertAccounts } = await graphql(
    'mutation($input: [AccountInput!]!) { upsertAccounts(input: $input) { refused results { outcome reason } } }',
    { input: rows },
  );
  if (upsertAccounts.refused !== 0) {
    const reasons = upsertAccounts.results.filter((r) => r.outcome === 'REFUSED').map((r) => r.reason);
    throw fail(`upsertAccounts refused ${upsertAccounts.refused} seeded rows: ${reasons.slice(0, 5).join('; ')}`);
  }

  // The seeded official accounts alone, counted as seeded.
  const { audience } = await graphql(
    `query($appids: [String!]) {
      audience(appids: $appids) {
        apps { appid followers linkedFollowers unlinkedFollowers }
        distinctPeople { atLeast atMost }
        linkedPeople
        unlinkedFollowers
        pairs { appids people }
        combinations { appids people }
      }
    }`,
    { appids: OFFICIAL.map((a) => a.appid) },
  );
  const got = normalise(audience);
  const want = normalise(expected);
  if (JSON.stringify(got) !== JSON.stringify(want)) {
    throw fail(`audience does not count the seeded accounts as seeded:\n  expected ${JSON.stringify(want)}\n` +
      `  got      ${JSON.stringify(got)}`);
  }
  console.log(`seeded ${rows.length} accounts; audience: ${audience.distinctPeople.atLeast} to ` +
    `${audience.distinctPeople.atMost} distinct people`);

  // What the page shows: every official account the server has.
  return (await graphql(
    '{ audience { apps { appid name } distinctPeople { atLeast atMost } linkedPeople unlinkedFollowers } }',
  )).audience;
}

async function keyWithout(scope) {
  const { createApiKey } = await graphql(
    'mutation($input: CreateApiKeyInput!) { createApiKey(input: $input) { key } }',
    { input: { name: `ci-dashboard-without-${scope}`, scopes: ['READ'] } },
  );
  return createApiKey.key;
}

// ---- the browser -----------------------------------------------------------

const consoleErrors = [];
const blocked = [];
let browser;
let page;

/** A browser context that blocks other hosts and reports page errors under `label`. */
async function newPage(label, { allowStatuses = [] } = {}) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  await context.route('**/*', (route) => {
    const url = new URL(route.request().url());
    if ((url.protocol === 'http:' || url.protocol === 'https:') && !LOCAL_HOSTS.has(url.hostname)) {
      blocked.push(url.href);
      return route.abort('blockedbyclient');
    }
    return route.continue();
  });
  // The page's Content-Security-Policy must never have to refuse anything.
  await context.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) => {
      console.error(`CSP violation: ${e.violatedDirective} blocked ${e.blockedURI || 'inline'}`);
    });
  });
  const p = await context.newPage();
  p.setDefaultTimeout(STEP_TIMEOUT_MS);
  p.on('console', (msg) => {
    if (msg.type() !== 'error') return;
    const text = msg.text();
    const expected = allowStatuses.some((s) => text.includes(`status of ${s}`));
    if (!expected) consoleErrors.push(`[${label}] ${text}`);
  });
  p.on('pageerror', (err) => consoleErrors.push(`[${label}] uncaught: ${err.message}`));
  return p;
}

async function open(p, what) {
  const response = await p.goto(`${base}/dashboard`, { waitUntil: 'load' });
  if (!response || response.status() !== 200) {
    throw fail(`${what}: GET /dashboard returned ${response ? response.status() : 'no response'}`);
  }
  if (await p.locator('[data-union360-assets-missing]').count()) {
    throw fail(`${what}: the server was built without the dashboard's assets (see the page text below)`);
  }
}

async function pasteKey(p, key) {
  await p.locator('#key').fill(key);
  await p.locator('#key-form button[type=submit]').click();
}

/** Waits for the numbers to show, or fails with the status the page shows instead. */
async function waitForNumbers(p, what) {
  try {
    await p.waitForFunction(() => {
      const error = document.querySelector('#status[data-kind=error]');
      const shown = !document.getElementById('content').hidden &&
        document.getElementById('n-at-least').dataset.value !== undefined;
      return error !== null || shown;
    }, null, { timeout: STEP_TIMEOUT_MS });
  } catch {
    throw fail(`${what}: the numbers did not show within ${STEP_TIMEOUT_MS / 1000} s`);
  }
  const error = await p.locator('#status[data-kind=error]').count();
  if (error) {
    throw fail(`${what}: the page shows an error instead of the charts: ${await p.locator('#status').innerText()}`);
  }
}

async function checkNumbers(p, audience, what) {
  const expected = {
    'distinctPeople.atLeast': audience.distinctPeople.atLeast,
    'distinctPeople.atMost': audience.distinctPeople.atMost,
    linkedPeople: audience.linkedPeople,
    unlinkedFollowers: audience.unlinkedFollowers,
  };
  const shown = await p.evaluate(() => Object.fromEntries(
    [...document.querySelectorAll('output[data-metric]')]
      .map((o) => [o.dataset.metric, { value: o.dataset.value, text: o.textContent }]),
  ));
  for (const [metric, value] of Object.entries(expected)) {
    const got = shown[metric];
    const digits = got ? got.text.replace(/\D/g, '') : '';
    if (!got || got.value !== String(value) || digits !== String(value)) {
      throw fail(`${what}: ${metric} shows ${JSON.stringify(got)}, the API says ${value}`);
    }
  }
}

/** Every chart drew on a canvas of non-zero size, with more than a few pixels painted. */
async function checkCharts(p, what) {
  let report;
  try {
    const handle = await p.waitForFunction(() => {
      const charts = [...document.querySelectorAll('[data-chart]')];
      const result = charts.map((el) => {
        const canvas = el.querySelector('canvas');
        if (!canvas || !canvas.width || !canvas.height) return { chart: el.dataset.chart, painted: 0 };
        const pixels = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
        let painted = 0;
        for (let i = 3; i < pixels.length; i += 4 * 7) if (pixels[i] > 0) painted++;
        return { chart: el.dataset.chart, width: canvas.width, height: canvas.height, painted };
      });
      return result.length === 4 && result.every((r) => r.painted > 300) ? result : false;
    }, null, { timeout: STEP_TIMEOUT_MS, polling: 250 });
    report = await handle.jsonValue();
  } catch {
    const state = await p.evaluate(() => [...document.querySelectorAll('[data-chart]')].map((el) => {
      const canvas = el.querySelector('canvas');
      return `${el.dataset.chart}: ${canvas ? `${canvas.width}x${canvas.height} canvas` : 'no canvas'}`;
    })).catch(() => []);
    throw fail(`${what}: not every chart drew on its canvas (${state.join(', ') || 'no chart containers'})`);
  }
  console.log(`charts drawn: ${report.map((r) => `${r.chart} ${r.width}x${r.height}`).join(', ')}`);
}

/** The followers chart's accessible description names each official account and no other app. */
async function checkAccountNames(p, audience, what) {
  const label = await p.locator('#chart-followers').getAttribute('aria-label') || '';
  for (const app of audience.apps) {
    if (!label.includes(app.name)) throw fail(`${what}: the followers chart does not name ${app.name}: ${label}`);
  }
  if (label.includes(MINI.name)) throw fail(`${what}: the followers chart counts the mini program ${MINI.name}`);
}

async function check() {
  if (!AUTHORIZATION.startsWith('Bearer ')) throw fail('GRAPHQL_AUTHORIZATION is not set to "Bearer <key>"');
  const key = AUTHORIZATION.slice('Bearer '.length);
  const audience = await seedServer();
  const readOnlyKey = await keyWithout('stats');

  browser = await chromium.launch({
    executablePath,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });

  // 1. A first visit asks for a key; pasting it draws everything, with one request.
  page = await newPage('main');
  let requests = 0;
  page.on('request', (req) => {
    if (req.method() === 'POST' && new URL(req.url()).pathname === '/graphql') requests++;
  });
  await open(page, 'first visit');
  await page.waitForSelector('#status[data-kind=info]');
  if (requests !== 0) throw fail(`without a key the page still sent ${requests} requests to /graphql`);
  await pasteKey(page, key);
  await waitForNumbers(page, 'after pasting the key');
  await checkNumbers(page, audience, 'after pasting the key');
  await checkCharts(page, 'after pasting the key');
  await checkAccountNames(page, audience, 'after pasting the key');
  await page.waitForTimeout(3000);
  if (requests !== 1) throw fail(`the page sent ${requests} requests to /graphql for one load (no polling expected)`);
  const refreshed = page.waitForRequest((req) => new URL(req.url()).pathname === '/graphql');
  await page.locator('#refresh').click();
  await refreshed;
  await page.waitForFunction(() => !document.getElementById('refresh').disabled);
  if (requests !== 2) throw fail(`pressing Refresh sent ${requests - 1} requests, expected 1`);
  await checkCharts(page, 'after Refresh');

  // Live: a new follower added through the API shows without Refresh.
  try {
    await page.waitForSelector('#live[data-state=on]', { timeout: STEP_TIMEOUT_MS });
  } catch {
    throw fail(`the page did not go live: ${await page.locator('#live').innerText()}`);
  }
  const liveOpenid = `oDashLive${Date.now()}`;
  await graphql(
    'mutation($input: [AccountInput!]!) { upsertAccounts(input: $input) { created } }',
    { input: [{ appid: NEWS.appid, openid: liveOpenid, unionid: `${liveOpenid}U`, following: true }] },
  );
  const grown = (await graphql('{ audience { distinctPeople { atLeast atMost } linkedPeople unlinkedFollowers apps { appid name } } }')).audience;
  if (grown.distinctPeople.atLeast !== audience.distinctPeople.atLeast + 1) {
    throw fail(`a new linked follower moved atLeast from ${audience.distinctPeople.atLeast} to ${grown.distinctPeople.atLeast}`);
  }
  try {
    await page.waitForFunction(
      (want) => document.getElementById('n-at-least').dataset.value === String(want),
      grown.distinctPeople.atLeast,
      { timeout: STEP_TIMEOUT_MS },
    );
  } catch {
    throw fail(`the page did not redraw by itself after a new follower (shows ${await page.locator('#n-at-least').innerText()}, ` +
      `the API says ${grown.distinctPeople.atLeast})`);
  }
  await checkNumbers(page, grown, 'after a live update');
  Object.assign(audience, grown);
  console.log(`live update: shown within ${STEP_TIMEOUT_MS / 1000} s of the write`);

  await page.waitForTimeout(1500); // let the charts' animations end
  mkdirSync(dirname(screenshot), { recursive: true });
  await page.screenshot({ path: screenshot, fullPage: true });

  // 2. The key is kept in this browser: a reload draws again without pasting.
  await open(page, 'reload');
  await waitForNumbers(page, 'after a reload');
  await checkNumbers(page, audience, 'after a reload');
  await checkCharts(page, 'after a reload');

  // 3. A key the playground keeps (its saved headers) is used without pasting.
  const fromPlayground = await newPage('playground key');
  await fromPlayground.context().addInitScript((authorization) => {
    if (!window.localStorage.getItem('graphiql:headers')) {
      window.localStorage.setItem('graphiql:headers', JSON.stringify({ Authorization: authorization }, null, 2));
    }
  }, AUTHORIZATION);
  await open(fromPlayground, 'with the playground\'s key');
  await waitForNumbers(fromPlayground, 'with the playground\'s key');
  await checkNumbers(fromPlayground, audience, 'with the playground\'s key');

  // 4. A wrong key and a key without the stats scope are explained.
  const refused = await newPage('bad keys', { allowStatuses: [401] });
  await open(refused, 'bad keys');
  for (const [badKey, expected] of [
    [`${key.slice(0, 17)}_${'A'.repeat(43)}`, /refused the API key \(401\)/],
    [readOnlyKey, /lacks the stats scope/],
  ]) {
    await pasteKey(refused, badKey);
    try {
      await refused.waitForFunction(
        (source) => new RegExp(source).test(document.querySelector('#status[data-kind=error]')?.innerText || ''),
        expected.source,
        { timeout: STEP_TIMEOUT_MS },
      );
    } catch {
      throw fail(`a bad key was not explained (expected ${expected}): ${await refused.locator('#status').innerText()}`);
    }
    if (!/union360 apikey create/.test(await refused.locator('#status').innerText())) {
      throw fail('the explanation of a bad key does not say how to create a good one');
    }
  }
}

const timer = setTimeout(() => {
  console.error(`dashboard check: FAILED: did not finish within ${TOTAL_TIMEOUT_MS / 1000} s`);
  process.exit(1);
}, TOTAL_TIMEOUT_MS);

let exitCode = 0;
try {
  await check();
  if (blocked.length > 0) throw fail('the page tried to load something from another host');
  if (consoleErrors.length > 0) throw fail('the page logged errors (listed below)');
  console.log(`dashboard check: ok (${blocked.length} external requests blocked)`);
} catch (err) {
  exitCode = 1;
  console.error(`dashboard check: FAILED: ${err.checkFailure ? err.message : err.stack || err}`);
  if (page) {
    const text = await page.evaluate(() => document.body?.innerText || '').catch(() => '');
    if (text) console.error(`page text:\n  ${text.slice(0, 1500).split('\n').join('\n  ')}`);
    try {
      mkdirSync(dirname(screenshot), { recursive: true });
      await page.screenshot({ path: screenshot, fullPage: true });
      console.error(`screenshot of the failure: ${screenshot}`);
    } catch {
      // The page may be gone; the messages above are what matters.
    }
  }
}
if (consoleErrors.length > 0) {
  const log = exitCode === 0 ? console.log : console.error;
  log(`page console errors (${consoleErrors.length}):`);
  for (const line of consoleErrors) log(`  ${line}`);
}
if (blocked.length > 0) {
  console.error(`blocked external requests (${blocked.length}):`);
  for (const url of blocked) console.error(`  ${url}`);
}
await browser?.close().catch(() => {});
clearTimeout(timer);
process.exit(exitCode);
