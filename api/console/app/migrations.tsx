import { useState } from 'preact/hooks';
import { api } from './api.ts';
import { dateTime } from './format.ts';
import { ErrorNote, usePolling } from './ui.tsx';

const POLL_MS = 2000;

interface Counts { total: number; pending: number; applied: number; failed: number; skipped: number }
interface Job {
  id: string; partner_id: string; name: string; state: string; state_detail: string | null; concurrency: number; dry_run: boolean;
  counts: Counts; created_at: string; finished_at: string | null;
}

/**
 * Fleet-wide migration jobs (GET /v1/migrations, every partner's for the operator), newest first:
 * each one's progress, and Pause or Resume while it has not ended.
 */
export function MigrationsPage({ operator }: { operator: boolean }) {
  const [jobs, setJobs] = useState<Job[] | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState<string | null>(null);
  const load = async () => {
    try {
      setJobs((await api<{ migrations: Job[] }>('GET', '/v1/migrations')).migrations);
      setError(null);
    } catch (err) {
      setError(err);
    }
  };
  usePolling(load, POLL_MS, []);
  const act = async (job: Job, action: 'pause' | 'resume') => {
    setBusy(job.id);
    try {
      await api('POST', `/v1/migrations/${encodeURIComponent(job.id)}/${action}`);
      await load();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(null);
    }
  };
  return (
    <section aria-labelledby="migrations-title">
      <div class="page-head"><h2 id="migrations-title">Migrations</h2></div>
      <ErrorNote error={error} />
      {jobs === null ? <p aria-busy="true">Loading…</p> : jobs.length === 0 ? <p class="empty">No migrations yet.</p> : (
        <div class="table-wrap">
          <table class="compact migration-list">
            <caption class="visually-hidden">Migration jobs, newest first</caption>
            <thead>
              <tr>
                <th scope="col">Name</th>{operator && <th scope="col">Partner</th>}<th scope="col">State</th><th scope="col">Progress</th>
                <th scope="col">Failed</th><th scope="col">Skipped</th><th scope="col">Created</th><th scope="col"><span class="visually-hidden">Actions</span></th>
              </tr>
            </thead>
            <tbody>
              {jobs.map((j) => {
                const done = j.counts.applied + j.counts.failed + j.counts.skipped;
                return (
                  <tr key={j.id} data-id={j.id} data-state={j.state}>
                    <td><code>{j.name}</code>{j.dry_run && ' (dry run)'}</td>
                    {operator && <td>{j.partner_id}</td>}
                    <td title={j.state_detail ?? undefined}>{j.state}</td>
                    <td><progress max={j.counts.total || 1} value={done} aria-label={`${done} of ${j.counts.total} databases`} /> {done}/{j.counts.total}</td>
                    <td>{j.counts.failed}</td>
                    <td>{j.counts.skipped}</td>
                    <td title={j.created_at}>{dateTime(j.created_at)}</td>
                    <td>
                      {(j.state === 'running' || j.state === 'pending') && <button type="button" class="secondary" disabled={busy === j.id} onClick={() => act(j, 'pause')}>Pause</button>}
                      {j.state === 'paused' && <button type="button" disabled={busy === j.id} onClick={() => act(j, 'resume')}>Resume</button>}
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}
