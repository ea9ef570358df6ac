import { useState } from 'preact/hooks';
import { api } from './api.ts';
import { dateTime } from './format.ts';
import type { Failures } from './types.ts';
import { ErrorNote, usePolling } from './ui.tsx';

const POLL_MS = 5000;

/** What failed lately (GET /v1/failures): refused logins by reason, failed wakes, webhook deliveries failing. */
export function RecentFailures() {
  const [f, setF] = useState<Failures | null>(null);
  const [error, setError] = useState<unknown>(null);
  usePolling(async () => {
    try {
      setF(await api<Failures>('GET', '/v1/failures'));
      setError(null);
    } catch (err) {
      setError(err);
    }
  }, POLL_MS, []);
  if (!f) return <section><h2>Recent failures</h2>{error ? <ErrorNote error={error} /> : <p aria-busy="true">Loading…</p>}</section>;
  const reasons = Object.entries(f.refused_logins.by_reason).sort((a, b) => b[1] - a[1]);
  return (
    <section aria-labelledby="failures-title" class="failures">
      <h2 id="failures-title">Recent failures</h2>
      <ErrorNote error={error} />
      <div class="grid">
        <div class="card">
          <h3>Refused logins in the last hour <span class="hint">(this gateway)</span></h3>
          {reasons.length === 0 ? <p class="hint">None.</p> : (
            <table class="compact refusals">
              <thead><tr><th scope="col">Reason</th><th scope="col" class="num">Count</th></tr></thead>
              <tbody>{reasons.map(([reason, n]) => <tr key={reason} data-reason={reason}><td>{reason.replace(/_/g, ' ')}</td><td class="num">{n}</td></tr>)}</tbody>
            </table>
          )}
          {f.refused_logins.recent.length > 0 && (
            <details>
              <summary>Latest {f.refused_logins.recent.length}</summary>
              <ul class="plain">{f.refused_logins.recent.map((l) => <li key={`${l.at}${l.why}`}><span class="sub">{dateTime(l.at)} · {l.client}</span>{l.why}</li>)}</ul>
            </details>
          )}
        </div>
        <div class="card">
          <h3>Failed wakes <span class="hint">(last day)</span></h3>
          {f.failed_wakes.length === 0 ? <p class="hint">None.</p> : (
            <ul class="plain">{f.failed_wakes.map((e) => (
              <li key={e.id}><span class="sub">{dateTime(e.created_at)}</span><a href={`#/databases/${encodeURIComponent(e.database_id ?? '')}`}>{e.database_id}</a>: {String(e.data.error ?? '')}</li>
            ))}</ul>
          )}
          <h3>Webhook deliveries failing</h3>
          {f.webhook_failures.length === 0 ? <p class="hint">None.</p> : (
            <ul class="plain webhook-failures">{f.webhook_failures.map((d) => (
              <li key={d.delivery_id}>
                <span class="sub">{d.state === 'failed' ? 'gave up' : `retry ${d.next_attempt_at ? dateTime(d.next_attempt_at) : 'soon'}`} · {d.attempts} attempts · {d.partner_id ?? 'operator'}</span>
                <code>{d.event_type}</code> to {d.url}: {d.last_error}
              </li>
            ))}</ul>
          )}
        </div>
      </div>
    </section>
  );
}
