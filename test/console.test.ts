// The web console in Debian's Chromium: every step a person takes, checked against the API it calls.
import fs from 'node:fs';
import path from 'node:path';
import type { Page } from 'playwright-core';
import t from 'tap';
import { ADMIN_KEY, startApi } from './api-client.ts';
import { ARTIFACTS, launchBrowser } from './browser.ts';
import { psql, psqlError } from './proxy-helpers.ts';
import { until } from './helpers.ts';

const api = await startApi({ PGFLEET_USAGE_FLUSH_SECONDS: '1', PGFLEET_AUTOSCALING: '0.25-1' });
t.teardown(() => api.stop());
const browser = await launchBrowser();
t.teardown(() => browser.close());
await browser.context.grantPermissions(['clipboard-read', 'clipboard-write']);
fs.mkdirSync(ARTIFACTS, { recursive: true });

const acme = await api.partner('acme');
const other = await api.partner('other');
const otherDb = (await api.request('POST', '/v1/databases', { key: other.key, body: { user_id: 'mallory', name: 'mallory secret' } })).body;

const page = await browser.context.newPage();
// Anything the page throws, and any Content-Security-Policy refusal, fails the run.
const pageProblems: string[] = [];
page.on('pageerror', (err) => pageProblems.push(`pageerror: ${err.message}`));
page.on('console', (msg) => {
  if (msg.type() === 'error' && !/Failed to load resource/.test(msg.text())) pageProblems.push(`console: ${msg.text()}`);
});
// Every answer the page got that was not a success (the sign-in probes nothing it may not use; the icon is there).
const failedLoads: string[] = [];
page.on('response', (res) => {
  if (res.status() >= 400) failedLoads.push(`${res.status()} ${res.request().method()} ${new URL(res.url()).pathname}`);
});
const consoleUrl = `${api.url}/console`;
const shot = (name: string) => page.screenshot({ path: path.join(ARTIFACTS, name), fullPage: true });
const textbox = (name: string | RegExp) => page.getByRole('textbox', { name, exact: true });
const sessionKey = (p: Page) => p.evaluate(() => JSON.stringify(Object.entries(sessionStorage)));

async function signIn(key: string) {
  await page.getByLabel('API key').fill(key);
  await page.getByRole('button', { name: 'Sign in' }).click();
}


let created: any;

t.test('signed out, the console shows only the sign-in form; a wrong key is refused with the API message', async (t) => {
  await page.goto(consoleUrl);
  await page.getByLabel('API key').waitFor();
  t.notOk(await page.getByRole('table').count(), 'no table');
  t.notMatch(await page.textContent('body'), /db-|mallory/, 'no data');
  await signIn('pgf_live_not-a-key');
  await page.getByRole('alert').filter({ hasText: 'unknown or revoked API key' }).waitFor();
  t.equal(await sessionKey(page), '[]', 'a refused key is not kept');
  t.same(failedLoads, ['401 GET /v1/whoami'], 'one call told the key is wrong; nothing else failed (the icon loaded)');
  failedLoads.length = 0;
  const icon = await fetch(`${api.url}/console/favicon.svg`);
  t.equal(icon.headers.get('content-type'), 'image/svg+xml');
  t.match(await icon.text(), /^<svg /);
});

t.test('a partner signs in; a database created through the API appears; another partner’s never does', async (t) => {
  // By keyboard alone: the key field has the focus it is given, Enter submits.
  await page.getByLabel('API key').fill('');
  await page.getByLabel('API key').focus();
  await page.keyboard.type(acme.key);
  await page.keyboard.press('Enter');
  await page.getByRole('heading', { name: 'Databases' }).waitFor();
  t.same(failedLoads, [], 'a partner signs in without a 403 in the browser console');
  t.match(await sessionKey(page), acme.key, 'the key is kept in sessionStorage');
  t.equal(await page.evaluate(() => localStorage.length), 0, 'and not in localStorage');
  await page.getByText('No databases yet').waitFor();

  created = (await api.request('POST', '/v1/databases', { key: acme.key, body: { user_id: 'alice', name: 'Alice app' } })).body;
  await api.request('POST', '/v1/databases', { key: acme.key, body: { user_id: 'bob', name: 'Bob shop', quotas: { compute_time_seconds: 7200 } } });
  const row = page.getByRole('row').filter({ hasText: 'Alice app' });
  await row.waitFor();
  t.match(await row.textContent(), /alice.*suspended/i, 'user and state');
  await page.getByRole('row').filter({ hasText: 'Bob shop' }).getByRole('meter', { name: 'Compute' }).waitFor();
  t.notMatch(await page.textContent('body'), /mallory/, "the other partner's database is not listed");

  await page.getByLabel('User id').fill('mallory');
  await page.getByRole('button', { name: 'Search' }).click();
  await page.getByText('No database matches').waitFor();
  await page.getByLabel('User id').fill('');
  await page.getByLabel('Name contains').fill('ALICE');
  await page.getByRole('button', { name: 'Search' }).click();
  await until('the name search', async () => (await page.locator('tbody tr').count()) === 1 && (await page.locator('tbody').textContent())!.includes('Alice app'));
  await page.getByRole('button', { name: 'Clear' }).click();
  await until('both rows again', async () => (await page.locator('tbody tr').count()) === 2);
});

t.test('psql wakes the database and the fleet shows it running', async (t) => {
  await psql(created.connection_uri_no_sni, 'CREATE TABLE t AS SELECT generate_series(1, 20000) AS g');
  t.equal(await psql(created.connection_uri_no_sni, 'SELECT count(*) FROM t'), '20000');
  const row = page.getByRole('row').filter({ hasText: 'Alice app' });
  await row.locator('.state-running').waitFor();
  t.pass('state changed to running without a reload');
  // Usage reaches the catalog each second; the page's first usage load then has points.
  await until('compute time in the usage API', async () => {
    const u = await api.request('GET', `/v1/databases/${created.id}/usage?granularity=hourly`, { key: acme.key });
    return u.body.periods.some((p: any) => p.usage.compute_time_seconds > 0 && p.usage.written_data_bytes > 0);
  });
  await shot('fleet.png');
  await page.setViewportSize({ width: 390, height: 844 });
  await shot('fleet-phone.png');
  await page.setViewportSize({ width: 1280, height: 900 });
});

t.test('the database page: connection strings, quotas saved through the API, usage charts with points', async (t) => {
  await page.getByRole('link', { name: 'Alice app' }).click();
  await page.getByRole('heading', { name: /Alice app/ }).waitFor();
  const sni = await textbox('Connection string (SNI)').inputValue();
  // The console knows no CA path (it names a file on the gateway's host): its URIs leave sslrootcert out.
  t.equal(sni, created.connection_uri_sni.replace(`:${encodeURIComponent(created.password)}@`, '@').replace(/&sslrootcert=[^&]*/, ''), 'the URI without the password');
  t.notMatch(await page.content(), created.password, 'the password is nowhere on the page');

  await textbox(/Compute time per month/).fill('10');
  await textbox(/^Storage/).fill('512');
  await page.getByRole('button', { name: 'Save' }).click();
  await page.getByRole('status').filter({ hasText: 'Saved' }).waitFor();
  const after = await api.request('GET', `/v1/databases/${created.id}`, { key: acme.key });
  t.equal(after.body.quotas.compute_time_seconds, 36000, 'the API has the new quota');
  t.equal(after.body.quotas.storage_bytes, 512 * 2 ** 20);

  const compute = page.locator('figure[data-metric="compute_time_seconds"]');
  await until('compute points', async () => Number(await compute.getAttribute('data-points')) > 0);
  t.match(await compute.locator('.plot').getAttribute('aria-label'), /quota 10 h/, 'the quota line is there');
  t.ok(await compute.locator('canvas').count(), 'uPlot drew a canvas');
  t.ok(Number(await page.locator('figure[data-metric="written_data_bytes"]').getAttribute('data-points')) > 0, 'written data has points');
  await page.getByLabel('Periods', { exact: true }).selectOption('hourly');
  await until('hourly points', async () => /per hour/.test((await compute.locator('.plot').getAttribute('aria-label'))!) && Number(await compute.getAttribute('data-points')) > 0);
  // The compute size: the range, the size now, its chart; the range changed from the page reaches the API.
  const size = page.locator('section.size');
  await until('the size chart', async () => (await size.locator('canvas').count()) > 0);
  t.match(await size.locator('.plot').getAttribute('aria-label'), /^Compute size over the last hour: \d+ changes?, now [\d.]+ CU, range 0\.25–1 CU$/, 'the size chart and its range');
  await page.getByLabel('Ceiling (it never goes above)').selectOption('0.5');
  await page.getByRole('button', { name: 'Apply range' }).click();
  await page.getByRole('status').filter({ hasText: 'Range applied' }).waitFor();
  t.same((await api.request('GET', `/v1/databases/${created.id}`, { key: acme.key })).body.autoscaling, { min_cu: 0.25, max_cu: 0.5 }, 'the new range is in the API');
  await compute.getByText('As a table').click();
  t.ok(await compute.locator('tbody tr').count() >= 1, 'the table lists the periods with use');
  await shot('database.png');
  await page.emulateMedia({ colorScheme: 'dark' });
  await shot('database-dark.png');
  await page.emulateMedia({ colorScheme: 'light' });
});

t.test('branches: a new branch appears; the restore dialog rewinds main to a time psql then sees', async (t) => {
  const uri = created.connection_uri_no_sni;
  const at = await psql(uri, `SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`);
  await psql(uri, 'DROP TABLE t');
  await page.getByLabel('New branch').fill('dev');
  await page.getByRole('button', { name: 'Create', exact: true }).click();
  await page.getByRole('status').filter({ hasText: 'Branch dev created from main' }).waitFor();
  await page.locator('.branch-list tr').filter({ hasText: 'dev' }).waitFor();

  await page.getByRole('button', { name: 'Restore…' }).click();
  const dialog = page.getByRole('dialog', { name: 'Restore a branch' });
  t.match(await dialog.textContent(), /Earliest: /, 'the earliest restorable time is shown');
  await dialog.getByLabel('Branch').selectOption('main');
  await dialog.getByLabel(/Restore to/).fill('yesterday');
  await dialog.getByRole('button', { name: 'Restore' }).click();
  await dialog.getByRole('alert').waitFor();
  t.match(await dialog.getByRole('alert').textContent(), /^at: .*\(400 bad_request\)$/, "the API's message for a bad time");
  await dialog.getByLabel(/Restore to/).fill(at);
  await dialog.getByRole('button', { name: 'Restore' }).click();
  const done = page.getByRole('status').filter({ hasText: 'Restored main' });
  await done.waitFor({ timeout: 120_000 });
  t.match(await done.textContent(), /kept as branch main_before_/);
  t.equal(await psql(uri, 'SELECT count(*) FROM t'), '20000', 'the dropped table is back');
  await page.locator('.branch-list tr').filter({ hasText: 'main_before_' }).waitFor();
  await page.getByRole('heading', { name: 'Branches' }).scrollIntoViewIfNeeded();
  await shot('database-branches.png');
});

t.test('reset password shows the new one once and psql connects with it; errors carry the API message', async (t) => {
  await page.getByRole('button', { name: `Reset password of ${created.role}` }).click();
  const field = textbox(`Password of ${created.role}`);
  await field.waitFor();
  const password = await field.inputValue();
  t.not(password, created.password);
  await page.getByRole('button', { name: `Copy Password of ${created.role}` }).click();
  t.equal(await page.evaluate(() => navigator.clipboard.readText()), password, 'the copy button copies it');
  const uri = await textbox('Connection string (no SNI)').inputValue();
  t.equal(await psql(uri, 'SELECT current_user'), created.role, 'the new password works');
  await page.getByRole('button', { name: 'I have saved it' }).click();
  t.notMatch(await page.content(), password, 'and is gone from the page');

  await page.getByLabel('New role').fill('Bad-Name');
  await page.getByRole('button', { name: 'Add role' }).click();
  await page.getByRole('alert').filter({ hasText: 'name: must be 1 to 63 characters' }).waitFor();

  await page.getByRole('button', { name: 'Issue token' }).click();
  t.match(await textbox(/^Token/).inputValue(), /^[\w-]+\.[\w-]+\.[\w-]+$/, 'a JWT is shown');
  await page.getByRole('button', { name: 'I have saved it' }).click();

  await page.getByRole('button', { name: 'Suspend' }).click();
  await page.locator('h1 .state-suspended').waitFor();
  t.equal((await api.request('GET', `/v1/databases/${created.id}`, { key: acme.key })).body.state, 'suspended');
  // The database's own events, as they happen.
  const events = page.locator('section[aria-labelledby="db-events-title"] tbody tr');
  await until('the events of the database', async () => (await events.count()) > 0 && (await events.first().getAttribute('data-type')) === 'database.suspended');
  const types = await events.evaluateAll((rows) => rows.map((r) => r.getAttribute('data-type')));
  t.ok(types.includes('database.created') && types.includes('role.password_reset') && types.includes('restore.finished'), types.join());
});

t.test('signing out leaves nothing behind', async (t) => {
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByLabel('API key').waitFor();
  t.equal(await sessionKey(page), '[]');
  t.notMatch(await page.textContent('body'), /Alice|db-/);
  await page.reload();
  await page.getByLabel('API key').waitFor();
  t.notMatch(await page.textContent('body'), /Alice|db-/, 'still signed out after a reload');
});

t.test('the operator sees fleet counts and partners, and rotates a key', async (t) => {
  await signIn(ADMIN_KEY);
  await page.getByRole('heading', { name: 'Operator' }).waitFor();
  const databases = page.locator('[data-count="Databases"]');
  await until('fleet counts', async () => (await databases.count()) === 1 && (await databases.textContent()) === '3');
  t.equal(await page.locator('[data-count="Partners"]').textContent(), '2');
  // The partners' table comes from its own request, after the counts.
  const acmeRow = page.getByRole('row').filter({ hasText: 'acme' });
  await acmeRow.waitFor();
  t.match(await acmeRow.textContent(), acme.id, "acme's row names its id");
  await page.getByRole('button', { name: 'Rotate the API key of other' }).click();
  await page.getByRole('dialog').getByRole('button', { name: 'Rotate key' }).click();
  const newKey = await textbox('API key of other').inputValue();
  t.equal((await api.request('GET', '/v1/databases', { key: other.key })).status, 401, 'the old key stops working');
  t.same(failedLoads.filter((l) => l.startsWith('403')), [], 'the operator signs in without a 403 either');
  // Usage per partner this month, and what failed lately (a refused login, by its reason).
  await until('acme has compute time this month', async () => (await page.getByRole('row').filter({ hasText: 'acme' }).locator('[data-usage="compute"]').textContent()) !== '0 s');
  await psqlError(created.connection_uri_no_sni.replace(`:${encodeURIComponent(created.password)}@`, ':wrong@'));
  await page.locator('.refusals tr[data-reason="wrong_password"]').waitFor({ timeout: 20_000 });
  t.match(await page.locator('.refusals tr[data-reason="wrong_password"]').textContent(), /wrong password\s*1/);
  await shot('operator.png');
  // Every partner's databases, searched by user id; a database page as its partner sees it, read-only.
  await page.getByRole('link', { name: 'Databases' }).click();
  await page.getByLabel('Search').fill('mallory');
  await page.getByRole('button', { name: 'Search' }).click();
  const found = page.locator('.operator-databases tbody tr');
  await until('the search', async () => (await found.count()) === 1 && (await found.textContent())!.includes('mallory secret'));
  t.match(await found.textContent(), /mallory secret.*other.*mallory/, 'with its partner');
  await shot('operator-databases.png');
  await found.getByRole('link').click();
  await page.getByRole('heading', { name: /mallory secret/ }).waitFor();
  t.match(await page.locator('.page-head .sub').first().textContent(), new RegExp(`partner ${other.id}`));
  t.equal(await page.getByRole('button', { name: 'Reset password of app_owner' }).count(), 0, 'nothing only its partner changes');
  t.equal(await page.getByLabel('New branch').count(), 0);
  await page.locator('section[aria-labelledby="db-events-title"] tr[data-type="database.created"]').waitFor();
  await shot('operator-database.png');
  // The event stream of every partner.
  await page.getByRole('link', { name: 'Events' }).click();
  await page.getByRole('heading', { name: 'Events of every partner' }).waitFor();
  await page.locator('.event-list tr[data-type="branch.created"]').first().waitFor();
  await page.getByLabel('Event types').fill('role.*');
  await page.getByRole('button', { name: 'Filter' }).click();
  await until('only role events', async () => {
    const shown = await page.locator('.event-list tbody tr').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-type')));
    return shown.length > 0 && shown.every((x) => x!.startsWith('role.'));
  });
  await shot('operator-events.png');
  await page.getByRole('button', { name: 'Sign out' }).click();

  await signIn(newKey);
  await page.getByRole('row').filter({ hasText: 'mallory secret' }).waitFor();
  t.notMatch(await page.textContent('body'), /Alice|Bob/, "acme's databases are not shown to another partner");
  await page.goto(`${consoleUrl}#/databases/${created.id}`);
  await page.getByRole('alert').filter({ hasText: `database "${created.id}" not found` }).waitFor();
  t.ok(otherDb.id);
});

t.test('the page threw nothing and broke no content security rule', async (t) => {
  t.same(pageProblems, []);
  t.same(failedLoads.filter((l) => l.startsWith('403')), [], 'no call the key may not make, ever');
});
