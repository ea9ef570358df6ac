import { useMemo, useState } from 'preact/hooks';
import { connectionInfo } from '../../../src/connection-uri.ts';
import { api, poll } from './api.ts';
import { Branches } from './branches.tsx';
import { EventStream } from './events.tsx';
import { ago, dateTime } from './format.ts';
import { Roles } from './roles.tsx';
import { Settings } from './settings.tsx';
import { ComputeSize } from './size-chart.tsx';
import { Tokens } from './tokens.tsx';
import type { Database } from './types.ts';
import { CopyField, ErrorNote, StateBadge, useAction, usePolling } from './ui.tsx';
import { UsageCharts } from './usage-chart.tsx';

const POLL_MS = 3000;

/** The URIs of the owner role without its password (which was shown once, at creation). */
function Connect({ db }: { db: Database }) {
  const domain = db.host.slice(db.endpoint_id.length + 1);
  const info = connectionInfo({ domain, port: db.port, configuredCertificate: db.ca_certificate_url === null }, db.endpoint_id, db.role, undefined, db.database);
  return (
    <section aria-labelledby="connect-title" class="card">
      <h2 id="connect-title">Connect</h2>
      <p class="hint">Add the password of <code>{db.role}</code> (given once, when the database was made; reset it under Roles for a new one).</p>
      <CopyField label="Connection string (SNI)" value={info.connection_uri_sni} />
      <CopyField label="Connection string (no SNI: endpoint in options)" value={info.connection_uri_no_sni} />
      <CopyField label="Pooled connection string (transaction pooling)" value={info.pooled_connection_uri} />
      <dl class="facts">
        <dt>Host</dt><dd>{db.host}</dd>
        <dt>Port</dt><dd>{db.port}</dd>
        <dt>Database</dt><dd>{db.database}</dd>
        <dt>Owner role</dt><dd>{db.role}</dd>
        {db.ca_certificate_url && <><dt>CA certificate</dt><dd><a href={db.ca_certificate_url} download="pgfleet-ca.crt">pgfleet-ca.crt</a> (sslrootcert, to verify the proxy)</dd></>}
      </dl>
    </section>
  );
}

/** What the operator sees of a database's settings: it reads them, its partner changes them. */
function Settled({ db }: { db: Database }) {
  return (
    <section aria-labelledby="settled-title" class="card">
      <h2 id="settled-title">Roles and quotas</h2>
      <dl class="facts">
        <dt>Roles</dt><dd>{db.roles.join(', ')}</dd>
        {Object.entries(db.quotas).map(([name, limit]) => <><dt>{name}</dt><dd>{limit ?? 'unlimited'}</dd></>)}
      </dl>
      <p class="hint">Its partner changes these; the operator key reads them, and may wake or suspend the compute.</p>
    </section>
  );
}

/**
 * One database: connection, roles, tokens, settings, usage, branches, events; state polled with
 * ETags. The operator sees any partner's database the same way, without what only its partner changes.
 */
export function DatabasePage({ id, operator = false }: { id: string; operator?: boolean }) {
  const [db, setDb] = useState<Database | null>(null);
  const [error, setError] = useState<unknown>(null);
  const action = useAction();
  const path = `/v1/databases/${encodeURIComponent(id)}`;
  const etag = useMemo(() => ({} as { value?: string }), [path]);
  usePolling(async () => {
    try {
      const answer = await poll<Database>(path, etag);
      if (answer) setDb(answer);
      setError(null);
    } catch (err) {
      setError(err);
    }
  }, POLL_MS, [path]);

  const lifecycle = async (verb: 'wake' | 'suspend') => {
    const answer = await action.run(() => api<Database>('POST', `${path}/${verb}`));
    if (answer) setDb(answer);
  };

  const back = operator ? '#/databases' : '#/';
  if (!db) {
    return (
      <>
        <p><a href={back}>← Databases</a></p>
        {error ? <ErrorNote error={error} /> : <p aria-busy="true">Loading…</p>}
      </>
    );
  }
  const running = db.state === 'running' || db.state === 'starting';
  return (
    <>
      <p class="crumbs"><a href={back}>← Databases</a></p>
      <div class="page-head">
        <div>
          <h1>{db.name ?? db.id} <StateBadge state={db.state} /></h1>
          <p class="sub">{db.id} · user <strong>{db.user_id}</strong> · region {db.region}{operator && <> · partner <strong>{db.partner_id}</strong></>}</p>
        </div>
        <div class="actions">
          <button type="button" onClick={() => lifecycle('wake')} disabled={action.busy || running}>Wake</button>
          <button type="button" class="secondary" onClick={() => lifecycle('suspend')} disabled={action.busy || db.state === 'suspended'}>Suspend</button>
        </div>
      </div>
      <ErrorNote error={error} />
      <ErrorNote error={action.error} />
      <dl class="facts summary">
        <dt>Size now</dt><dd>{db.current_cu} CU <span class="hint">({db.autoscaling.min_cu}–{db.autoscaling.max_cu})</span></dd>
        <dt>Connections now</dt><dd>{db.connections}</dd>
        <dt>Last active</dt><dd title={db.last_active_at ? dateTime(db.last_active_at) : undefined}>{ago(db.last_active_at)}</dd>
        <dt>Suspends after</dt><dd>{db.suspend_timeout_seconds === 0 ? 'never' : `${db.suspend_timeout_seconds} s idle`}</dd>
        <dt>Created</dt><dd>{dateTime(db.created_at)}</dd>
      </dl>
      <div class="grid">
        <Connect db={db} />
        {operator ? <Settled db={db} /> : (
          <>
            <Roles db={db} onChanged={setDb} />
            <Tokens db={db} />
            <Settings db={db} onSaved={setDb} />
          </>
        )}
      </div>
      <ComputeSize db={db} onSaved={setDb} readOnly={operator} />
      <Branches db={db} readOnly={operator} />
      <UsageCharts db={db} />
      <EventStream databaseId={db.id} title="Events of this database" />
    </>
  );
}
