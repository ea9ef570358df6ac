import { useState } from 'preact/hooks';
import { api } from './api.ts';
import { dateTime } from './format.ts';
import type { Database, Token } from './types.ts';
import { CopyField, ErrorNote, OneTime, useAction } from './ui.tsx';

/** Issue a short-lived JWT for one role (POST /v1/databases/:id/tokens). */
export function Tokens({ db }: { db: Database }) {
  const [role, setRole] = useState(db.role);
  const [ttl, setTtl] = useState('3600');
  const [token, setToken] = useState<Token | null>(null);
  const { busy, error, run } = useAction();
  const issue = async (e: Event) => {
    e.preventDefault();
    const t = await run(() => api<Token>('POST', `/v1/databases/${encodeURIComponent(db.id)}/tokens`, { role, ttl_seconds: Number(ttl) }));
    if (t) setToken(t);
  };
  return (
    <section aria-labelledby="tokens-title" class="card">
      <h2 id="tokens-title">Tokens</h2>
      <p class="hint">A token connects as its role when given as the password (TLS, <code>options=auth=jwt</code> with an endpoint).</p>
      <form onSubmit={issue} class="stack">
        <label for="token-role">Role</label>
        <select id="token-role" value={role} onChange={(e) => setRole(e.currentTarget.value)}>
          {db.roles.map((r) => <option value={r}>{r}</option>)}
        </select>
        <label for="token-ttl">Lifetime (seconds)</label>
        <input id="token-ttl" type="number" min={1} step={1} value={ttl} onInput={(e) => setTtl(e.currentTarget.value)} />
        <ErrorNote error={error} />
        <div class="actions"><button type="submit" disabled={busy}>Issue token</button></div>
      </form>
      {token && (
        <OneTime title={`Token for ${token.role}`} onDone={() => setToken(null)}>
          <CopyField label={`Token (expires ${dateTime(token.expires_at)})`} value={token.token} secret />
        </OneTime>
      )}
    </section>
  );
}
