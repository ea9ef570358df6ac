// The console's Migrations page in Debian's Chromium: a partner sees its jobs' progress and resumes a paused one.
import t from 'tap';
import { startApi } from './api-client.ts';
import { launchBrowser } from './browser.ts';
import { until } from './helpers.ts';

const api = await startApi();
t.teardown(() => api.stop());
const browser = await launchBrowser();
t.teardown(() => browser.close());
const { key } = await api.partner('acme');

t.test('a paused job is shown with its progress, and Resume resumes it', async (t) => {
  const db = (await api.request('POST', '/v1/databases', { key, body: { user_id: 'alice' } })).body;
  const job = (await api.request('POST', '/v1/migrations', { key, body: { name: '001_console', sql: 'SELECT 1', selector: { ids: [db.id] } } })).body;
  await api.request('POST', `/v1/migrations/${job.id}/pause`, { key });
  const page = await browser.context.newPage();
  await page.goto(`${api.url}/console`);
  await page.getByLabel('API key').fill(key);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('link', { name: 'Migrations' }).click();
  const row = page.locator(`tr[data-id="${job.id}"]`);
  await row.waitFor();
  t.equal(await row.getAttribute('data-state'), 'paused');
  t.match(await row.textContent(), /001_console/);
  t.match(await row.getByRole('progressbar').getAttribute('aria-label'), /of 1 databases/);
  await row.getByRole('button', { name: 'Resume' }).click();
  await until('the job to finish', async () => (await api.request('GET', `/v1/migrations/${job.id}`, { key })).body.state === 'finished', 120_000);
  await page.locator(`tr[data-id="${job.id}"][data-state="finished"]`).waitFor({ timeout: 30_000 });
  t.match(await row.textContent(), /1\/1/);
  t.equal(await row.getByRole('button').count(), 0, 'an ended job has no button');
});
