import { useMemo, useState } from 'preact/hooks';
import { poll, query } from './api.ts';
import { ago } from './format.ts';
import type { DatabaseList, Partner } from './types.ts';
import { ErrorNote, Pager, StateBadge, usePolling } from './ui.tsx';

const POLL_MS = 5000;

/**
 * Every partner's databases for the operator (GET /v1/databases with the operator key): search by
 * user id, name, endpoint or database id, one partner or all, a page at a time.
 */
export function OperatorDatabases() {
  const [partners, setPartners] = useState<Partner[]>([]);
  const [draft, setDraft] = useState({ q: '', partner: '' });
  const [filters, setFilters] = useState({ q: '', partner: '' });
  const [cursors, setCursors] = useState<(string | undefined)[]>([undefined]);
  const [list, setList] = useState<DatabaseList | null>(null);
  const [error, setError] = useState<unknown>(null);
  const path = `/v1/databases${query({ q: filters.q, partner_id: filters.partner, limit: 25, cursor: cursors.at(-1) })}`;
  const etag = useMemo(() => ({} as { value?: string }), [path]);
  const partnersEtag = useMemo(() => ({} as { value?: string }), []);
  usePolling(async () => {
    try {
      const p = await poll<{ partners: Partner[] }>('/v1/partners', partnersEtag);
      if (p) setPartners(p.partners);
      const answer = await poll<DatabaseList>(path, etag);
      if (answer) setList(answer);
      setError(null);
    } catch (err) {
      setError(err);
    }
  }, POLL_MS, [path]);
  const names = new Map(partners.map((p) => [p.id, p.name]));
  const search = (e: Event) => {
    e.preventDefault();
    setFilters({ q: draft.q.trim(), partner: draft.partner });
    setCursors([undefined]);
    setList(null);
  };
  return (
    <section aria-labelledby="all-databases-title">
      <h1 id="all-databases-title">Databases</h1>
      <form class="filters" role="search" onSubmit={search}>
        <div class="field">
          <label for="operator-q">Search</label>
          <input id="operator-q" value={draft.q} placeholder="user id, name, ep-…, db-…" onInput={(e) => setDraft({ ...draft, q: e.currentTarget.value })} />
        </div>
        <div class="field">
          <label for="operator-partner">Partner</label>
          <select id="operator-partner" value={draft.partner} onChange={(e) => setDraft({ ...draft, partner: e.currentTarget.value })}>
            <option value="">every partner</option>
            {partners.map((p) => <option value={p.id}>{p.name}</option>)}
          </select>
        </div>
        <div class="actions"><button type="submit">Search</button></div>
      </form>
      <ErrorNote error={error} />
      {list === null ? <p aria-busy="true">Loading…</p> : list.databases.length === 0 ? <p class="empty">No database matches.</p> : (
        <div class="table-wrap">
          <table class="operator-databases">
            <thead><tr><th scope="col">Database</th><th scope="col">Partner</th><th scope="col">User</th><th scope="col">State</th><th scope="col" class="wide-only">Endpoint</th><th scope="col" class="wide-only">Last active</th></tr></thead>
            <tbody>
              {list.databases.map((db) => (
                <tr key={db.id}>
                  <td class="db-name"><a href={`#/databases/${encodeURIComponent(db.id)}`}>{db.name ?? db.id}</a>{db.name && <span class="sub">{db.id}</span>}</td>
                  <td>{names.get(db.partner_id) ?? db.partner_id}</td>
                  <td>{db.user_id}</td>
                  <td><StateBadge state={db.state} /></td>
                  <td class="wide-only"><code>{db.endpoint_id}</code></td>
                  <td class="wide-only">{ago(db.last_active_at)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      <Pager cursors={cursors} next={list?.next_cursor} onChange={setCursors} />
    </section>
  );
}
