/**
 * README's serverless snippet for a default install (TLS with the generated CA, db.localhost), run
 * as written: its shell block with the database answer's fields pasted in, its app.mjs as it
 * stands, in a directory of its own (the CA fetched over the API, nothing of the gateway's files).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { startApi } from './api-client.ts';
import { repoRoot } from './helpers.ts';
import { execFileAsync } from './proxy-helpers.ts';

const api = await startApi({ PGFLEET_HTTP_PORT: '0' });
t.teardown(() => api.stop());

/** The fenced blocks of README's "Serverless and edge clients" section. */
function snippets(): { shell: string; app: string } {
  const readme = fs.readFileSync(path.join(repoRoot, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('## Serverless and edge clients'), readme.indexOf('## JWT authentication'));
  const blocks = [...section.matchAll(/```(\w+)\n([\s\S]*?)```/g)].map(([, lang, body]) => ({ lang, body: body! }));
  const shell = blocks.find((b) => b.lang === 'sh' && b.body.includes('node app.mjs'));
  const app = blocks.find((b) => b.lang === 'js' && b.body.startsWith('// app.mjs'));
  if (!shell || !app) throw new Error('README lost its serverless snippet');
  return { shell: shell.body, app: app.body };
}

t.test('the README snippet, as written, runs neon() over https and a Pool over wss on localhost', async (t) => {
  const partner = await api.partner('edge');
  const db = (await api.request('POST', '/v1/databases', { key: partner.key, body: { user_id: 'edge-dev' } })).body;
  const port = api.gateway.httpPort!;
  t.equal(db.serverless_ws_proxy, `localhost:${port}/v2`, 'serverless_ws_proxy');
  t.equal(db.serverless_fetch_endpoint, `https://localhost:${port}/sql`, 'serverless_fetch_endpoint');
  t.match(db.ca_certificate_url, /^http:\/\/127\.0\.0\.1:\d+\/v1\/tls\/ca\.crt$/, 'ca_certificate_url');

  const { shell, app } = snippets();
  const pasted = shell.replace(/<(\w+)>/g, (_, field: string) => {
    if (typeof db[field] !== 'string') throw new Error(`README names ${field}, which the answer lacks`);
    return db[field];
  });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgf-serverless-readme-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.symlinkSync(path.join(repoRoot, 'node_modules'), path.join(dir, 'node_modules')); // as after npm install there
  fs.writeFileSync(path.join(dir, 'app.mjs'), app);
  const { stdout } = await execFileAsync('bash', ['-e', '-c', pasted], { cwd: dir });
  t.equal(stdout.trim(), `over https: ${db.role}\nover wss: ${db.role}`, 'both doors answer as the database\'s role');
  t.equal(fs.readFileSync(path.join(dir, 'pgfleet-ca.crt'), 'utf8'), fs.readFileSync(api.gateway.caPath!, 'utf8'), 'the CA came over the API');

  const untrusted = pasted.replace('NODE_EXTRA_CA_CERTS=pgfleet-ca.crt', 'NODE_EXTRA_CA_CERTS=');
  await t.rejects(execFileAsync('bash', ['-e', '-c', untrusted], { cwd: dir }), /certificate/, 'without the CA, Node refuses the proxy: TLS is verified');
});
