// GraphQL-over-HTTP conformance audit of a running server, run by .ci/run.
//
// Usage: node .ci/audit.mjs http://127.0.0.1:PORT/graphql
//
// Runs graphql-http's server audits and prints every result. Exits 1 if any
// audit ends in a warning or an error (notices are printed, not counted as
// failures). If GRAPHQL_AUTHORIZATION is set, its value is sent as the
// Authorization header of every audit request.

import { auditServer } from 'graphql-http';

const url = process.argv[2];
const TOTAL_TIMEOUT_MS = 120_000;

if (!url || !/^https?:\/\//.test(url)) {
  console.error('usage: node .ci/audit.mjs http://127.0.0.1:PORT/graphql');
  process.exit(2);
}

const authorization = process.env.GRAPHQL_AUTHORIZATION;
const fetchFn = authorization
  ? (input, init = {}) => {
      const headers = new Headers(init.headers);
      if (!headers.has('authorization')) headers.set('authorization', authorization);
      return fetch(input, { ...init, headers });
    }
  : fetch;

// What the server answered, to explain a failed audit.
async function describe(response) {
  if (!response || typeof response.status !== 'number') return '';
  const type = response.headers?.get('content-type') || 'no content-type';
  let body = '';
  try {
    body = (await response.clone().text()).replace(/\s+/g, ' ').trim();
  } catch {
    // The audit already read the body.
  }
  if (body.length > 300) body = `${body.slice(0, 300)}…`;
  return `HTTP ${response.status}, ${type}${body ? `, body: ${body}` : ''}`;
}

const timer = setTimeout(() => {
  console.error(`graphql-http audit: did not finish within ${TOTAL_TIMEOUT_MS / 1000} s`);
  process.exit(1);
}, TOTAL_TIMEOUT_MS);

let results;
try {
  results = await auditServer({ url, fetchFn });
} catch (err) {
  const cause = err?.cause?.message ? ` (${err.cause.message})` : '';
  console.error(`graphql-http audit: could not run against ${url}: ${err?.message || err}${cause}`);
  process.exit(1);
}
clearTimeout(timer);

const counts = { ok: 0, notice: 0, warn: 0, error: 0 };
for (const result of results) {
  counts[result.status] = (counts[result.status] ?? 0) + 1;
  const label = result.status.padEnd(6);
  if (result.status === 'ok') {
    console.log(`${label} ${result.name}`);
    continue;
  }
  console.log(`${label} ${result.name}`);
  console.log(`       reason: ${result.reason}`);
  const answer = await describe(result.response);
  if (answer) console.log(`       server: ${answer}`);
}

const notices = counts.notice ? `, ${counts.notice} notices` : '';
console.log(
  `graphql-http audit: ${counts.ok} ok, ${counts.warn} warnings, ${counts.error} errors${notices}`,
);
process.exit(counts.warn > 0 || counts.error > 0 ? 1 : 0);
