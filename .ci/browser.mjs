// Browser check of the GraphiQL playground, run by .ci/run.
//
// Usage: node .ci/browser.mjs http://127.0.0.1:PORT [screenshot.png]
//
// Opens /graphiql in headless Chromium with every request to another host
// blocked, waits for the editor to show the preloaded query, pastes the API
// key (GRAPHQL_AUTHORIZATION, "Bearer <key>") into the headers editor as a
// user would, reloads to check the browser kept it, runs the query, waits
// for a GraphQL response in the result pane, runs a subscription (over
// /graphql/ws, the key in `connection_init`) and sees an event a write made
// arrive in the result pane, then checks that GET /graphql from a browser
// (Accept: text/html) serves the playground too. Writes a
// screenshot (default target/ci-graphiql.png) and exits 1 on any failure,
// printing the page's console errors.

import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { chromium } from 'playwright-core';

const base = (process.argv[2] || '').replace(/\/+$/, '');
const screenshot = process.argv[3] || 'target/ci-graphiql.png';
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const STEP_TIMEOUT_MS = 30_000;
const TOTAL_TIMEOUT_MS = 180_000;
const LOCAL_HOSTS = new Set(['127.0.0.1', 'localhost', '[::1]']);
const GRAPHQL_ACCEPT = 'application/graphql-response+json';
const AUTHORIZATION = process.env.GRAPHQL_AUTHORIZATION || '';

if (!/^https?:\/\//.test(base)) {
  console.error('usage: node .ci/browser.mjs http://127.0.0.1:PORT [screenshot.png]');
  process.exit(2);
}

const consoleErrors = [];
const failedGraphql = [];
const blocked = [];
const LIVE_APPID = 'wxd5b0a1c2e3f40021';
let browser;
let page;

async function graphql(query, variables = {}) {
  const response = await fetch(`${base}/graphql`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Authorization: AUTHORIZATION },
    body: JSON.stringify({ query, variables }),
  });
  const body = await response.json().catch(() => null);
  if (!body || body.errors) {
    throw fail(`GraphQL request failed (HTTP ${response.status}): ${JSON.stringify(body).slice(0, 400)}`);
  }
  return body.data;
}

function fail(message) {
  const error = new Error(message);
  error.checkFailure = true;
  return error;
}

// Waits until the query editor holds the preloaded operation, failing at once
// if the server sent the "assets missing" page instead.
async function waitForEditor(what) {
  let state;
  try {
    state = await page.waitForFunction(
      () => {
        if (document.querySelector('[data-union360-assets-missing]')) return 'missing';
        const editor = document.querySelector('.graphiql-query-editor');
        return editor !== null && /\b(query|subscription)\b/.test(editor.innerText) ? 'ready' : false;
      },
      null,
      { timeout: STEP_TIMEOUT_MS },
    );
  } catch {
    throw fail(`${what}: the GraphiQL query editor did not render with the preloaded query ` +
      `within ${STEP_TIMEOUT_MS / 1000} s`);
  }
  if ((await state.jsonValue()) === 'missing') {
    throw fail(`${what}: the server was built without the GraphiQL assets (see the page text below)`);
  }
}

async function check() {
  browser = await chromium.launch({
    executablePath,
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
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  await context.route('**/*', (route) => {
    const url = new URL(route.request().url());
    if ((url.protocol === 'http:' || url.protocol === 'https:') && !LOCAL_HOSTS.has(url.hostname)) {
      blocked.push(url.href);
      return route.abort('blockedbyclient');
    }
    return route.continue();
  });
  page = await context.newPage();
  page.setDefaultTimeout(STEP_TIMEOUT_MS);
  page.on('console', (msg) => {
    if (msg.type() === 'error') consoleErrors.push(msg.text());
  });
  page.on('pageerror', (err) => consoleErrors.push(`uncaught: ${err.message}`));
  // Every GraphQL request the playground makes (its schema introspection
  // included, which powers autocompletion and the docs) must succeed.
  page.on('response', (res) => {
    const req = res.request();
    if (req.method() === 'POST' && new URL(res.url()).pathname === '/graphql' && res.status() !== 200) {
      failedGraphql.push(`${res.status()} for ${(req.postData() || '').slice(0, 120)}`);
    }
  });
  page.on('requestfailed', (req) => {
    if (!blocked.includes(req.url())) {
      consoleErrors.push(`request failed: ${req.method()} ${req.url()} (${req.failure()?.errorText})`);
    }
  });

  // 1. The playground page renders the editor with the preloaded query.
  const response = await page.goto(`${base}/graphiql`, { waitUntil: 'load' });
  if (!response || response.status() !== 200) {
    throw fail(`GET /graphiql returned ${response ? response.status() : 'no response'}`);
  }
  await waitForEditor('GET /graphiql');

  // 2. The user pastes a key into the headers editor; the browser keeps it
  // across a reload, and the schema is introspected with it. (Requests made
  // before the key was pasted were refused, as they should be.)
  if (!AUTHORIZATION) throw fail('GRAPHQL_AUTHORIZATION is not set');
  await page.evaluate((authorization) => {
    // The tools pane holds the variables and headers editors; the headers
    // one is shown (the page opens on it), the other has class "hidden".
    const editor = document.querySelector('.graphiql-editor-tool .graphiql-editor:not(.hidden) .CodeMirror');
    editor.CodeMirror.setValue(JSON.stringify({ Authorization: authorization }, null, 2));
  }, AUTHORIZATION);
  await page.waitForTimeout(500);
  failedGraphql.length = 0;
  const introspected = page.waitForResponse(
    (res) => new URL(res.url()).pathname === '/graphql' &&
      /IntrospectionQuery/.test(res.request().postData() || ''),
    { timeout: STEP_TIMEOUT_MS },
  ).catch(() => null);
  await page.reload({ waitUntil: 'load' });
  await waitForEditor('GET /graphiql (reloaded)');
  const introspection = await introspected;
  if (!introspection || introspection.status() !== 200) {
    throw fail(`after a reload, schema introspection got ${introspection ? introspection.status() : 'no response'}: ` +
      'the pasted key was not kept or not sent');
  }

  // 3. Running the query reaches /graphql and shows a GraphQL response.
  const executed = page.waitForRequest(
    (req) => {
      if (req.method() !== 'POST' || new URL(req.url()).pathname !== '/graphql') return false;
      return !/IntrospectionQuery/.test(req.postData() || '');
    },
    { timeout: STEP_TIMEOUT_MS },
  ).catch(() => null);
  await page.locator('.graphiql-execute-button').first().click();
  const request = await executed;
  if (!request) throw fail('clicking the run button sent no POST /graphql request');
  const sent = await request.allHeaders();
  const accept = sent.accept || '';
  if (!accept.includes(GRAPHQL_ACCEPT)) {
    throw fail(`the playground sent Accept: "${accept}", expected it to include ${GRAPHQL_ACCEPT}`);
  }
  if (sent.authorization !== AUTHORIZATION) {
    throw fail('the playground did not send the pasted key as its Authorization header');
  }
  try {
    await page.waitForFunction(
      () => {
        const pane = document.querySelector('.graphiql-response');
        return pane !== null && /"(data|errors)"/.test(pane.innerText);
      },
      null,
      { timeout: STEP_TIMEOUT_MS },
    );
  } catch {
    throw fail('the result pane did not show a GraphQL response ("data" or "errors")');
  }
  if (failedGraphql.length > 0) {
    throw fail(`the playground's GraphQL requests failed:\n  ${failedGraphql.join('\n  ')}`);
  }
  mkdirSync(dirname(screenshot), { recursive: true });
  await page.screenshot({ path: screenshot });

  // 4. A subscription runs over /graphql/ws with the pasted key, and an
  // account followed meanwhile shows in the result pane.
  const framesSent = [];
  page.on('websocket', (ws) => {
    if (new URL(ws.url()).pathname === '/graphql/ws') {
      ws.on('framesent', (frame) => framesSent.push(String(frame.payload)));
    }
  });
  await graphql(
    'mutation($input: RegisterAppInput!) { registerApp(input: $input) { appid } }',
    { input: { appid: LIVE_APPID, kind: 'OFFICIAL_ACCOUNT', name: 'Playground live', secret: 'd5b0a1c2e3f40021d5b0a1c2e3f40021' } },
  ).catch(() => {}); // registered by an earlier run against this server
  // A new tab, so that no operation name from the first one is left over;
  // the cursor inside the subscription makes it the one the button runs.
  await page.locator('.graphiql-tab-add').first().click();
  // The key is not pasted again: a new tab sends the one pasted in the first.
  await page.evaluate(({ query }) => {
    const editor = document.querySelector('.graphiql-query-editor .CodeMirror').CodeMirror;
    editor.setValue(query);
    editor.focus();
    editor.setCursor({ line: 1, ch: 4 });
  }, {
    query: `subscription PlaygroundLive {\n  accountEvents(appids: ["${LIVE_APPID}"]) { kind appid openid }\n}`,
  });
  await page.waitForTimeout(300);
  await page.locator('.graphiql-execute-button').first().click();
  const subscribed = Date.now();
  while (!framesSent.some((f) => f.includes('"subscribe"'))) {
    if (Date.now() - subscribed > STEP_TIMEOUT_MS) {
      throw fail(`the playground did not subscribe over /graphql/ws (frames sent: ${framesSent.join(' | ') || 'none'})`);
    }
    await page.waitForTimeout(100);
  }
  const init = framesSent.find((f) => f.includes('connection_init')) || '';
  if (!init.includes(AUTHORIZATION)) {
    throw fail('a new playground tab did not send the key pasted in the first tab in connection_init');
  }
  await page.waitForTimeout(500);
  const openid = `oPlaygroundLive${Date.now()}`;
  await graphql(
    'mutation($input: [AccountInput!]!) { upsertAccounts(input: $input) { created } }',
    { input: [{ appid: LIVE_APPID, openid, following: true }] },
  );
  try {
    await page.waitForFunction(
      (id) => {
        const pane = document.querySelector('.graphiql-response');
        return pane !== null && pane.innerText.includes(id) && pane.innerText.includes('FOLLOWED');
      },
      openid,
      { timeout: STEP_TIMEOUT_MS },
    );
  } catch {
    const shown = await page.locator('.graphiql-response').innerText().catch(() => '');
    throw fail(`the subscription's event did not show in the result pane: ${shown.slice(0, 400)}`);
  }
  // Stop it (the run button stops a running subscription).
  await page.locator('.graphiql-execute-button').first().click();

  // 5. A browser asking for GET /graphql (Accept: text/html) gets the playground.
  const asHtml = await page.goto(`${base}/graphql`, { waitUntil: 'load' });
  if (!asHtml || asHtml.status() !== 200) {
    throw fail(`GET /graphql with Accept: text/html returned ${asHtml ? asHtml.status() : 'no response'}`);
  }
  const type = asHtml.headers()['content-type'] || '';
  if (!type.startsWith('text/html')) {
    throw fail(`GET /graphql with Accept: text/html returned Content-Type "${type}"`);
  }
  await waitForEditor('GET /graphql (Accept: text/html)');
}

const timer = setTimeout(() => {
  console.error(`browser check: FAILED: did not finish within ${TOTAL_TIMEOUT_MS / 1000} s`);
  process.exit(1);
}, TOTAL_TIMEOUT_MS);

let exitCode = 0;
try {
  await check();
  console.log(`browser check: ok (${blocked.length} external requests blocked)`);
} catch (err) {
  exitCode = 1;
  console.error(`browser check: FAILED: ${err.checkFailure ? err.message : err.stack || err}`);
  if (page) {
    const text = await page.evaluate(() => document.body?.innerText || '').catch(() => '');
    if (text) console.error(`page text:\n  ${text.slice(0, 1500).split('\n').join('\n  ')}`);
    try {
      mkdirSync(dirname(screenshot), { recursive: true });
      await page.screenshot({ path: screenshot });
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
  console.log(`blocked external requests (${blocked.length}):`);
  for (const url of blocked) console.log(`  ${url}`);
}
await browser?.close().catch(() => {});
clearTimeout(timer);
process.exit(exitCode);
