import { useEffect, useMemo, useState } from 'preact/hooks';
import { api, poll } from './api.ts';
import { dateTime } from './format.ts';
import type { Branch, Database } from './types.ts';
import { CopyButton, Dialog, ErrorNote, StateBadge, useAction, usePolling } from './ui.tsx';

const POLL_MS = 5000;
const nowUtc = () => new Date().toISOString().replace(/\.\d+Z$/, 'Z');

/** The restore dialog: rewind a branch to a time or LSN (POST /v1/databases/:id/restore). */
function RestoreDialog({ db, branches, open, onClose, onRestored }: {
  db: Database; branches: Branch[]; open: boolean; onClose: () => void; onRestored: (message: string) => void;
}) {
  const root = branches.find((b) => b.parent === null)?.name ?? 'main';
  const [branch, setBranch] = useState(root);
  const [at, setAt] = useState(nowUtc);
  const { busy, error, setError, run } = useAction();
  useEffect(() => {
    if (open) {
      setAt(nowUtc());
      setError(null);
    }
  }, [open]);
  const chosen = branches.find((b) => b.name === branch);
  const submit = async (e: Event) => {
    e.preventDefault();
    const answer = await run(() => api<{ branch: Branch; before: Branch }>('POST', `/v1/databases/${encodeURIComponent(db.id)}/restore`, { branch, at: at.trim() }));
    if (answer) onRestored(`Restored ${answer.branch.name} to ${at.trim()}; its state just before is kept as branch ${answer.before.name}.`);
  };
  return (
    <Dialog title="Restore a branch" open={open} onClose={onClose}>
      <form class="stack" onSubmit={submit}>
        <p class="hint">The branch keeps its endpoint and connection strings; its open sessions end. Its state just before is kept as a new branch.</p>
        <label for="restore-branch">Branch</label>
        <select id="restore-branch" value={branch} onChange={(e) => setBranch(e.currentTarget.value)}>
          {branches.map((b) => <option value={b.name}>{b.name}</option>)}
        </select>
        <label for="restore-at">Restore to <span class="hint">(UTC time, RFC 3339, or an LSN)</span></label>
        <input id="restore-at" required value={at} onInput={(e) => setAt(e.currentTarget.value)} aria-describedby="restore-earliest" spellcheck={false} />
        <span id="restore-earliest" class="hint">
          {chosen?.earliest_restorable_at ? `Earliest: ${dateTime(chosen.earliest_restorable_at)} (${chosen.earliest_restorable_at})` : 'No history kept for this branch.'}
        </span>
        <ErrorNote error={error} />
        <div class="actions">
          <button type="submit" class="danger" disabled={busy}>{busy ? 'Restoring…' : 'Restore'}</button>
          <button type="button" class="secondary" onClick={onClose}>Cancel</button>
        </div>
      </form>
    </Dialog>
  );
}

/** A database's branches (GET /v1/databases/:id/branches), a new branch, and the restore dialog (not for a reader). */
export function Branches({ db, readOnly = false }: { db: Database; readOnly?: boolean }) {
  const [branches, setBranches] = useState<Branch[] | null>(null);
  const [pollError, setPollError] = useState<unknown>(null);
  const [refresh, setRefresh] = useState(0);
  const [restoring, setRestoring] = useState(false);
  const [done, setDone] = useState<string | null>(null);
  const [form, setForm] = useState({ name: '', parent: '' });
  const action = useAction();
  const path = `/v1/databases/${encodeURIComponent(db.id)}/branches`;
  const etag = useMemo(() => ({} as { value?: string }), [path, refresh]);
  usePolling(async () => {
    try {
      const answer = await poll<{ branches: Branch[] }>(path, etag);
      if (answer) setBranches(answer.branches);
      setPollError(null);
    } catch (err) {
      setPollError(err);
    }
  }, POLL_MS, [path, refresh]);

  const create = async (e: Event) => {
    e.preventDefault();
    const body: Record<string, string> = { name: form.name.trim() };
    if (form.parent) body.parent = form.parent;
    const b = await action.run(() => api<Branch>('POST', path, body));
    if (b) {
      setForm({ name: '', parent: '' });
      setDone(`Branch ${b.name} created from ${b.parent}.`);
      setRefresh((n) => n + 1);
    }
  };

  return (
    <section aria-labelledby="branches-title" class="branches">
      <div class="page-head">
        <h2 id="branches-title">Branches</h2>
        {!readOnly && <div class="actions">
          <form class="inline" onSubmit={create}>
            <label for="branch-name">New branch</label>
            <input id="branch-name" required value={form.name} onInput={(e) => setForm({ ...form, name: e.currentTarget.value })} placeholder="dev" />
            <label for="branch-parent" class="visually-hidden">Parent branch</label>
            <select id="branch-parent" value={form.parent} onChange={(e) => setForm({ ...form, parent: e.currentTarget.value })}>
              <option value="">from main</option>
              {branches?.filter((b) => b.parent !== null).map((b) => <option value={b.name}>from {b.name}</option>)}
            </select>
            <button type="submit" disabled={action.busy}>Create</button>
          </form>
          <button type="button" class="secondary" disabled={!branches} onClick={() => { setDone(null); setRestoring(true); }}>Restore…</button>
        </div>}
      </div>
      <ErrorNote error={pollError} />
      <ErrorNote error={action.error} />
      {done && <p role="status" class="notice">{done}</p>}
      {branches && (
        <div class="table-wrap">
          <table class="branch-list">
            <thead>
              <tr><th scope="col">Branch</th><th scope="col">From</th><th scope="col">State</th><th scope="col">Connection string</th><th scope="col" class="wide-only">Restorable from</th><th scope="col" class="wide-only">Expires</th></tr>
            </thead>
            <tbody>
              {branches.map((b) => (
                <tr key={b.id}>
                  <td><strong>{b.name}</strong><span class="sub">{b.endpoint_id}</span></td>
                  <td>{b.parent ?? '—'}{b.parent_time && <span class="sub">at {dateTime(b.parent_time)}</span>}</td>
                  <td><StateBadge state={b.state} /></td>
                  <td class="uri"><code title={b.connection_uri}>{b.connection_uri}</code> <CopyButton text={b.connection_uri} label={`connection string of branch ${b.name}`} /></td>
                  <td class="wide-only">{b.earliest_restorable_at ? dateTime(b.earliest_restorable_at) : 'no history'}</td>
                  <td class="wide-only">{b.expires_at ? dateTime(b.expires_at) : 'never'}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {branches && !readOnly && (
        <RestoreDialog db={db} branches={branches} open={restoring} onClose={() => setRestoring(false)}
          onRestored={(message) => { setRestoring(false); setDone(message); setRefresh((n) => n + 1); }} />
      )}
    </section>
  );
}
