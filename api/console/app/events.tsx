import { useEffect, useRef, useState } from 'preact/hooks';
import { api, query } from './api.ts';
import { dateTime } from './format.ts';
import type { EventItem, EventList } from './types.ts';
import { ErrorNote, usePolling } from './ui.tsx';

const POLL_MS = 3000;
const KEPT = 200;

/** The data of an event in one line, without what the columns already show. */
const summary = (e: EventItem) =>
  Object.entries(e.data).filter(([k]) => k !== 'partner_id' && k !== 'database_id')
    .map(([k, v]) => `${k}=${typeof v === 'object' ? JSON.stringify(v) : String(v)}`).join(' ');

/**
 * Events as they happen (GET /v1/events, followed with its cursor): newest first, of one database
 * or of every one the key sees, since the last day; a filter by type or pattern (database.*).
 */
export function EventStream({ databaseId, title = 'Events' }: { databaseId?: string; title?: string }) {
  const [types, setTypes] = useState('');
  const [applied, setApplied] = useState('');
  const [events, setEvents] = useState<EventItem[] | null>(null);
  const [error, setError] = useState<unknown>(null);
  const cursor = useRef<string | null>(null);
  // Declared before the polling, so a new filter starts over before the first poll of it.
  useEffect(() => {
    cursor.current = null;
    setEvents(null);
  }, [applied, databaseId]);

  usePolling(async () => {
    try {
      const page = await api<EventList>('GET', `/v1/events${query({
        database_id: databaseId, type: applied || undefined, limit: 500,
        ...(cursor.current ? { cursor: cursor.current } : { since: databaseId ? undefined : new Date(Date.now() - 86_400_000).toISOString() }),
      })}`);
      cursor.current = page.next_cursor ?? cursor.current;
      setEvents((old) => [...page.events.reverse(), ...(old ?? [])].slice(0, KEPT));
      setError(null);
    } catch (err) {
      setError(err);
    }
  }, POLL_MS, [applied, databaseId]);

  const id = databaseId ? 'db-events' : 'events';
  return (
    <section aria-labelledby={`${id}-title`}>
      <div class="page-head">
        <h2 id={`${id}-title`}>{title}</h2>
        <form class="inline" role="search" onSubmit={(e) => { e.preventDefault(); setApplied(types.trim()); }}>
          <label for={`${id}-type`}>Event types</label>
          <input id={`${id}-type`} value={types} placeholder="database.*, quota.exceeded" onInput={(e) => setTypes(e.currentTarget.value)} />
          <button type="submit" class="secondary">Filter</button>
        </form>
      </div>
      <ErrorNote error={error} />
      {events === null ? <p aria-busy="true">Loading…</p> : events.length === 0 ? <p class="empty">No events{databaseId ? '' : ' in the last day'}.</p> : (
        <div class="table-wrap">
          <table class="compact event-list">
            <caption class="visually-hidden">{title}, newest first; new ones appear as they happen</caption>
            <thead><tr><th scope="col">When</th><th scope="col">Type</th>{!databaseId && <th scope="col">Database</th>}<th scope="col">Details</th></tr></thead>
            <tbody>
              {events.map((e) => (
                <tr key={e.id} data-type={e.type}>
                  <td title={e.created_at}>{dateTime(e.created_at)}</td>
                  <td><code>{e.type}</code></td>
                  {!databaseId && <td>{e.database_id ? <a href={`#/databases/${encodeURIComponent(e.database_id)}`}>{e.database_id}</a> : '—'}</td>}
                  <td class="details">{summary(e)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}
