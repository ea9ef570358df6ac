import { useEffect, useState } from 'preact/hooks';
import { api } from './api.ts';
import { type Unit, formatIn } from './format.ts';
import type { Database, QuotaName, Quotas } from './types.ts';
import { ErrorNote, useAction } from './ui.tsx';

/** Quotas are stored in seconds and bytes; people type hours and MiB. */
export const QUOTA_INPUTS: { name: QuotaName; label: string; unit: string; scale: number; format: Unit }[] = [
  { name: 'compute_time_seconds', label: 'Compute time per month', unit: 'hours', scale: 3600, format: 'time' },
  { name: 'compute_unit_seconds', label: 'Compute unit hours per month (size × time)', unit: 'CU-hours', scale: 3600, format: 'time' },
  { name: 'data_transfer_bytes', label: 'Data transfer per month', unit: 'MiB', scale: 2 ** 20, format: 'bytes' },
  { name: 'written_data_bytes', label: 'Written data per month', unit: 'MiB', scale: 2 ** 20, format: 'bytes' },
  { name: 'storage_bytes', label: 'Storage', unit: 'MiB', scale: 2 ** 20, format: 'bytes' },
  { name: 'max_connections', label: 'Connections at once', unit: 'connections', scale: 1, format: 'count' },
  // Empty here is the gateway's default share (PGFLEET_DATABASE_MAX_CLIENT_CONNECTIONS), not unlimited.
  { name: 'max_client_connections', label: 'Client connections at once (empty: the gateway\'s default)', unit: 'connections', scale: 1, format: 'count' },
];

const shown = (v: number | null | undefined, scale: number) => (v === null || v === undefined ? '' : String(Number((v / scale).toPrecision(12))));

function draftOf(db: Database) {
  return {
    suspend: String(db.suspend_timeout_seconds),
    quotas: Object.fromEntries(QUOTA_INPUTS.map((q) => [q.name, shown(db.quotas[q.name], q.scale)])) as Record<QuotaName, string>,
  };
}

/** Suspend timeout and quotas (PATCH /v1/databases/:id); an empty quota is unlimited. */
export function Settings({ db, onSaved }: { db: Database; onSaved: (db: Database) => void }) {
  const [draft, setDraft] = useState(() => draftOf(db));
  const [saved, setSaved] = useState(false);
  const { busy, error, setError, run } = useAction();
  // A poll that brings other values (someone else's PATCH) refreshes the form unless it is being edited.
  const [dirty, setDirty] = useState(false);
  useEffect(() => {
    if (!dirty) setDraft(draftOf(db));
  }, [db.suspend_timeout_seconds, JSON.stringify(db.quotas)]);

  const edit = (change: Partial<typeof draft>) => {
    setDraft({ ...draft, ...change });
    setDirty(true);
    setSaved(false);
  };
  const save = async (e: Event) => {
    e.preventDefault();
    const quotas: Quotas = {};
    for (const q of QUOTA_INPUTS) {
      const text = draft.quotas[q.name].trim();
      const value = Math.round(Number(text) * q.scale);
      // NaN would go out as JSON null (unlimited): refuse it here instead.
      if (text !== '' && !Number.isFinite(value)) return setError(new Error(`${q.label}: "${text}" is not a number`));
      quotas[q.name] = text === '' ? null : value;
    }
    if (draft.suspend.trim() === '') return setError(new Error('Suspend after idle: a number of seconds is needed (0 = never)'));
    const answer = await run(() => api<Database>('PATCH', `/v1/databases/${encodeURIComponent(db.id)}`, {
      suspend_timeout_seconds: Number(draft.suspend),
      quotas,
    }));
    if (answer) {
      setDirty(false);
      setSaved(true);
      onSaved(answer);
    }
  };
  return (
    <section aria-labelledby="settings-title" class="card">
      <h2 id="settings-title">Quotas and suspend</h2>
      <form onSubmit={save} class="stack" novalidate>
        <label for="suspend-timeout">Suspend after idle (seconds; 0 = never)</label>
        <input id="suspend-timeout" type="number" inputMode="numeric" value={draft.suspend} onInput={(e) => edit({ suspend: e.currentTarget.value })} />
        {QUOTA_INPUTS.map((q) => {
          const text = draft.quotas[q.name].trim();
          const value = Number(text) * q.scale;
          const hint = text === '' ? 'unlimited' : Number.isFinite(value) ? `= ${formatIn(q.format, value)}` : 'not a number';
          return (
            <div class="quota" key={q.name}>
              <label for={`quota-${q.name}`}>{q.label} <span class="hint">({q.unit})</span></label>
              <div class="with-hint">
                <input id={`quota-${q.name}`} type="text" inputMode="decimal" placeholder="unlimited" value={draft.quotas[q.name]}
                  onInput={(e) => edit({ quotas: { ...draft.quotas, [q.name]: e.currentTarget.value } })} aria-describedby={`quota-${q.name}-hint`} />
                <span id={`quota-${q.name}-hint`} class="hint">{hint}</span>
              </div>
            </div>
          );
        })}
        <ErrorNote error={error} />
        <div class="actions">
          <button type="submit" disabled={busy || !dirty}>Save</button>
          {saved && <span role="status" class="ok">Saved</span>}
        </div>
      </form>
    </section>
  );
}
