import { useMemo, useState } from 'preact/hooks';
import { api, poll, query } from './api.ts';
import { ago, dateTime } from './format.ts';
import { NewDatabase } from './new-database.tsx';
import type { Database, DatabaseList, DatabaseUsage, Usage } from './types.ts';
import { ErrorNote, Pager, StateBadge, UsageBar, usePolling } from './ui.tsx';

const PAGE_SIZES = [10, 25, 50, 100];
const LIST_POLL_MS = 3000;
const USAGE_POLL_MS = 15_000;

/** This month's usage of each database on the page (one monthly usage call per row, a few at a time). */
function useMonthUsage(ids: string[]): { usage: Record<string, Usage>; error: unknown } {
  const [usage, setUsage] = useState<Record<string, Usage>>({});
  const [error, setError] = useState<unknown>(null);
  usePolling(async () => {
    const next: Record<string, Usage> = {};
    const queue = [...ids];
    try {
      await Promise.all(Array.from({ length: 4 }, async () => {
        for (let id = queue.shift(); id; id = queue.shift()) {
          const u = await api<DatabaseUsage>('GET', `/v1/databases/${encodeURIComponent(id)}/usage?granularity=monthly`);
          next[id] = u.periods[u.periods.length - 1]?.usage ?? {};
        }
      }));
      setUsage(next);
      setError(null);
    } catch (err) {
      setError(err);
    }
  }, USAGE_POLL_MS, [ids.join(',')]);
  return { usage, error };
}

function Row({ db, usage }: { db: Database; usage: Usage | undefined }) {
  const u = usage ?? {};
  return (
    <tr>
      <td class="db-name c-name">
        <a href={`#/databases/${encodeURIComponent(db.id)}`}>{db.name ?? db.id}</a>
        {db.name && <span class="sub">{db.id}</span>}
      </td>
      <td class="c-user">{db.user_id}</td>
      <td class="c-state"><StateBadge state={db.state} /></td>
      <td class="wide-only">{db.region}</td>
      <td class="wide-only" title={db.last_active_at ? dateTime(db.last_active_at) : undefined}>{ago(db.last_active_at)}</td>
      <td class="num c-conn">{db.connections}</td>
      <td class="usage-cell c-usage">
        {usage === undefined ? <span class="sub">…</span> : (
          <>
            <UsageBar label="Compute" used={u.compute_time_seconds ?? 0} quota={db.quotas.compute_time_seconds} unit="time" />
            <UsageBar label="Transfer" used={u.data_transfer_bytes ?? 0} quota={db.quotas.data_transfer_bytes} unit="bytes" />
            <UsageBar label="Written" used={u.written_data_bytes ?? 0} quota={db.quotas.written_data_bytes} unit="bytes" />
            <UsageBar label="Storage" used={u.storage_bytes ?? 0} quota={db.quotas.storage_bytes} unit="bytes" />
          </>
        )}
      </td>
    </tr>
  );
}

/** A partner's databases: search, pages as the API gives them, state polled with ETags. */
export function FleetPage() {
  const [draft, setDraft] = useState({ user_id: '', name: '' });
  const [filters, setFilters] = useState({ user_id: '', name: '' });
  const [limit, setLimit] = useState(25);
  // cursors[i] opens page i; the last one is the page shown.
  const [cursors, setCursors] = useState<(string | undefined)[]>([undefined]);
  const [list, setList] = useState<DatabaseList | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [refresh, setRefresh] = useState(0);
  const cursor = cursors[cursors.length - 1];
  const path = `/v1/databases${query({ user_id: filters.user_id, name: filters.name, limit, cursor })}`;
  const etag = useMemo(() => ({} as { value?: string }), [path, refresh]);

  usePolling(async () => {
    try {
      const answer = await poll<DatabaseList>(path, etag);
      if (answer) setList(answer);
      setError(null);
    } catch (err) {
      setError(err);
    }
  }, LIST_POLL_MS, [path, refresh]);

  const ids = list?.databases.map((d) => d.id) ?? [];
  const { usage, error: usageError } = useMonthUsage(ids);

  const search = (e: Event) => {
    e.preventDefault();
    setFilters({ user_id: draft.user_id.trim(), name: draft.name.trim() });
    setCursors([undefined]);
    setList(null);
  };
  const clear = () => {
    setDraft({ user_id: '', name: '' });
    setFilters({ user_id: '', name: '' });
    setCursors([undefined]);
  };
  const filtered = filters.user_id !== '' || filters.name !== '';

  return (
    <>
      <div class="page-head">
        <h1>Databases</h1>
        <NewDatabase onCreated={() => setRefresh((n) => n + 1)} />
      </div>
      <form class="filters" role="search" onSubmit={search}>
        <div class="field">
          <label for="filter-user">User id</label>
          <input id="filter-user" value={draft.user_id} onInput={(e) => setDraft({ ...draft, user_id: e.currentTarget.value })} placeholder="exact user id" />
        </div>
        <div class="field">
          <label for="filter-name">Name contains</label>
          <input id="filter-name" value={draft.name} onInput={(e) => setDraft({ ...draft, name: e.currentTarget.value })} />
        </div>
        <div class="field">
          <label for="page-size">Per page</label>
          <select id="page-size" value={limit} onChange={(e) => { setLimit(Number(e.currentTarget.value)); setCursors([undefined]); }}>
            {PAGE_SIZES.map((n) => <option value={n}>{n}</option>)}
          </select>
        </div>
        <div class="actions">
          <button type="submit">Search</button>
          {filtered && <button type="button" class="secondary" onClick={clear}>Clear</button>}
        </div>
      </form>
      <ErrorNote error={error} />
      <ErrorNote error={usageError} />
      {list === null ? <p aria-busy="true">Loading…</p> : list.databases.length === 0 ? (
        <p class="empty">{filtered ? 'No database matches.' : cursors.length > 1 ? 'No more databases.' : 'No databases yet: create one here or with POST /v1/databases.'}</p>
      ) : (
        <div class="table-wrap">
          <table class="fleet">
            <caption class="visually-hidden">Databases, page {cursors.length}; state refreshes every few seconds</caption>
            <thead>
              <tr>
                <th scope="col">Database</th>
                <th scope="col">User</th>
                <th scope="col">State</th>
                <th scope="col" class="wide-only">Region</th>
                <th scope="col" class="wide-only">Last active</th>
                <th scope="col" class="num">Conn.</th>
                <th scope="col">This month</th>
              </tr>
            </thead>
            <tbody>{list.databases.map((db) => <Row key={db.id} db={db} usage={usage[db.id]} />)}</tbody>
          </table>
        </div>
      )}
      <Pager cursors={cursors} next={list?.next_cursor} onChange={setCursors} />
    </>
  );
}
