// The clients partner teams use, against a running server, run by .ci/run.
//
// Usage: node .ci/clients.mjs http://127.0.0.1:PORT/graphql
//
// 1. Every ```graphql block of README.md is one named operation, valid
//    against schema.graphql (graphql-js).
// 2. Apollo Client with its default normalised cache (no keyFields): an
//    account renamed by a mutation shows the new nickname in a query read
//    before, from the cache alone.
// 3. Apollo's persisted-queries link: a hash-only request, the document sent
//    once on PERSISTED_QUERY_NOT_FOUND, then hash-only requests answered.
// 4. relay-compiler: a fragment on Person with @refetchable compiles, and
//    the refetch query it generates (through `node(id:)`) runs.
//
// GRAPHQL_AUTHORIZATION (a key with read, pii and write) goes with every
// request. Exits 1 on the first failed check.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

import { ApolloClient, HttpLink, InMemoryCache, gql } from '@apollo/client';
import { PersistedQueryLink } from '@apollo/client/link/persisted-queries';
import { Kind, buildSchema, parse, validate } from 'graphql';

const url = process.argv[2];
if (!url || !/^https?:\/\//.test(url)) {
  console.error('usage: node .ci/clients.mjs http://127.0.0.1:PORT/graphql');
  process.exit(2);
}
const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..');
const authorization = process.env.GRAPHQL_AUTHORIZATION ?? '';
const headers = authorization ? { authorization } : {};

// Distinct from what the other checks write.
const APPID = 'wx0000000000c11e01';
const UNIONID = 'u-clients-check';

function check(name, fn) {
  return fn().then(
    () => console.log(`ok: ${name}`),
    (error) => {
      console.error(`FAILED: ${name}\n${error.stack ?? error}`);
      process.exit(1);
    },
  );
}

async function post(query, variables = {}) {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify({ query, variables }),
  });
  const body = await response.json();
  assert.equal(body.errors, undefined, JSON.stringify(body));
  return body.data;
}

async function rename(nickname) {
  return post(
    `mutation Rename($rows: [AccountInput!]!) {
       upsertAccounts(input: $rows) { results { outcome account { id nickname } } } }`,
    { rows: [{ appid: APPID, openid: 'o-clients-1', unionid: UNIONID, nickname }] },
  );
}

await check('README operations are named and valid against schema.graphql', async () => {
  const schema = buildSchema(readFileSync(join(root, 'schema.graphql'), 'utf8'));
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  const blocks = [...readme.matchAll(/^[ \t]*```graphql[ \t]*\n([\s\S]*?)^[ \t]*```[ \t]*$/gm)];
  assert.ok(blocks.length >= 5, `only ${blocks.length} graphql blocks found`);
  for (const [, text] of blocks) {
    const document = parse(text);
    assert.equal(document.definitions.length, 1, `one operation per block:\n${text}`);
    const [operation] = document.definitions;
    assert.equal(operation.kind, Kind.OPERATION_DEFINITION, text);
    assert.ok(operation.name, `unnamed operation:\n${text}`);
    const errors = validate(schema, document);
    assert.deepEqual(errors.map(String), [], text);
  }
  console.log(`   ${blocks.length} operations`);
});

await check('Apollo Client: a renamed account is renamed in the normalised cache', async () => {
  await post(
    `mutation Register($input: RegisterAppInput!) { registerApp(input: $input) { appid } }`,
    {
      input: {
        appid: APPID,
        kind: 'MINI_PROGRAM',
        name: 'Clients check',
        secret: '0123456789abcdef0123456789abcdef',
      },
    },
  ).catch(() => {}); // registered by an earlier run against this database
  await rename('Before');
  const client = new ApolloClient({
    link: new HttpLink({ uri: url, headers }),
    cache: new InMemoryCache(),
  });
  const PERSON = gql`
    query PersonCard($unionid: String!) {
      person(unionid: $unionid, refresh: CACHE_ONLY) { id unionid accounts { id openid nickname } }
    }
  `;
  const first = await client.query({ query: PERSON, variables: { unionid: UNIONID } });
  assert.equal(first.data.person.accounts[0].nickname, 'Before');
  await client.mutate({
    mutation: gql`
      mutation Rename($rows: [AccountInput!]!) {
        upsertAccounts(input: $rows) { results { account { id nickname } } }
      }
    `,
    variables: { rows: [{ appid: APPID, openid: 'o-clients-1', unionid: UNIONID, nickname: 'After' }] },
  });
  const cached = client.readQuery({ query: PERSON, variables: { unionid: UNIONID } });
  assert.equal(cached.person.accounts[0].nickname, 'After', JSON.stringify(cached));
  const keys = Object.keys(client.cache.extract());
  assert.ok(keys.some((k) => k.startsWith('Account:')), keys.join(', '));
  assert.ok(keys.some((k) => k.startsWith('Person:')), keys.join(', '));
});

await check("Apollo's persisted-queries link", async () => {
  const sent = [];
  const recording = (input, init) => {
    sent.push(JSON.parse(init.body));
    return fetch(input, init);
  };
  const clientWith = () =>
    new ApolloClient({
      link: new PersistedQueryLink({
        sha256: (text) => createHash('sha256').update(text).digest('hex'),
      }).concat(new HttpLink({ uri: url, headers, fetch: recording })),
      cache: new InMemoryCache(),
    });
  // A document this server has not seen: a fresh alias.
  const alias = `apps${Date.now()}`;
  const APPS = gql(`query PersistedApps { ${alias}: apps { id appid } }`);
  const first = await clientWith().query({ query: APPS });
  assert.ok(first.data[alias].some((app) => app.appid === APPID));
  assert.equal(sent.length, 2, JSON.stringify(sent));
  assert.equal(sent[0].query, undefined, 'the first request sends the hash alone');
  assert.ok(sent[1].query, 'the document is sent after PERSISTED_QUERY_NOT_FOUND');
  sent.length = 0;
  const again = await clientWith().query({ query: APPS });
  assert.deepEqual(again.data, first.data);
  assert.equal(sent.length, 1);
  assert.equal(sent[0].query, undefined, 'a known hash is answered without the document');
});

await check('relay-compiler: @refetchable on Person, and its refetch query runs', async () => {
  const project = mkdtempSync(join(tmpdir(), 'union360-relay-'));
  mkdirSync(join(project, 'src', '__generated__'), { recursive: true });
  writeFileSync(
    join(project, 'relay.config.json'),
    JSON.stringify({
      src: './src',
      schema: join(root, 'schema.graphql'),
      language: 'javascript',
      artifactDirectory: './src/__generated__',
    }),
  );
  writeFileSync(
    join(project, 'src', 'PersonCard.js'),
    `graphql\`
      fragment PersonCard_person on Person @refetchable(queryName: "PersonCardRefetchQuery") {
        unionid
        nickname
        accounts { id openid nickname }
      }
    \`;
    graphql\`
      query PersonCardQuery($unionid: String!) {
        person(unionid: $unionid) { ...PersonCard_person }
      }
    \`;
    `,
  );
  const compiler = join(here, 'node_modules', '.bin', 'relay-compiler');
  execFileSync(compiler, [], { cwd: project, stdio: 'inherit' });
  // The artifacts are ES modules (`export default`); node loads them as such.
  const artifact = join(project, 'src', '__generated__', 'PersonCardRefetchQuery.graphql.js');
  const refetch = (await import(pathToFileURL(artifact))).default;
  const { id } = (await post(`query PersonId($u: String!) { person(unionid: $u) { id } }`, { u: UNIONID }))
    .person;
  const data = await post(refetch.params.text, { id });
  assert.equal(data.node.id, id, JSON.stringify(data));
  assert.equal(data.node.unionid, UNIONID, JSON.stringify(data));
  assert.equal(data.node.accounts[0].nickname, 'After', JSON.stringify(data));
});

console.log('client checks passed');
