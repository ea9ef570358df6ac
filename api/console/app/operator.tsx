import { useRef, useState } from 'preact/hooks';
import { api, poll } from './api.ts';
import { RecentFailures } from './failures.tsx';
import { bytes, count, dateTime, duration } from './format.ts';
import type { Fleet, Partner, PartnerUsage, PartnerWithKey } from './types.ts';
import { CopyField, Dialog, ErrorNote, OneTime, useAction, usePolling } from './ui.tsx';

const POLL_MS = 5000;
const RATE_WINDOW_MS = 60_000;

/** Per-minute rates from successive answers of counters (as Prometheus' rate() does), over the last minute. */
function useRates() {
  const samples = useRef<{ at: number; wakes: number; authFailures: number }[]>([]);
  return (fleet: Fleet) => {
    const now = Date.now();
    const list = samples.current;
    list.push({ at: now, wakes: fleet.wakes_total.ok + fleet.wakes_total.failed, authFailures: fleet.auth_failures_total });
    while (list.length > 2 && now - list[0]!.at > RATE_WINDOW_MS) list.shift();
    const first = list[0]!;
    const minutes = (now - first.at) / 60_000;
    if (minutes <= 0) return null;
    return { wakes: (list[list.length - 1]!.wakes - first.wakes) / minutes, authFailures: (list[list.length - 1]!.authFailures - first.authFailures) / minutes };
  };
}

function Counts({ fleet, rates }: { fleet: Fleet; rates: { wakes: number; authFailures: number } | null }) {
  const perMinute = (n: number | undefined) => (n === undefined ? '…' : n.toFixed(n < 10 ? 1 : 0));
  const connections = Object.values(fleet.connections_total).reduce((a, b) => a + b, 0);
  const cards: [string, string, string][] = [
    ['Partners', count(fleet.partners), ''],
    ['Databases', count(fleet.databases), ''],
    ['Running computes', count(fleet.computes_active), 'starting or running on this gateway'],
    ['Wakes per minute', perMinute(rates?.wakes), `${count(fleet.wakes_total.ok)} ok, ${count(fleet.wakes_total.failed)} failed in all`],
    ['Auth failures per minute', perMinute(rates?.authFailures), `${count(fleet.auth_failures_total)} in all`],
    ['Connections', count(connections), Object.entries(fleet.connections_total).map(([k, v]) => `${k} ${count(v)}`).join(', ') || 'none yet'],
  ];
  return (
    <section aria-labelledby="counts-title">
      <h2 id="counts-title" class="visually-hidden">Fleet counts</h2>
      <dl class="counts">
        {cards.map(([label, value, note]) => (
          <div class="count card" key={label}>
            <dt>{label}</dt>
            <dd data-count={label}>{value}</dd>
            {note && <dd class="sub">{note}</dd>}
          </div>
        ))}
      </dl>
      <p class="sub">Counters since {dateTime(fleet.counters_since)} (this gateway's <code>/metrics</code>); rates over the last minute.</p>
    </section>
  );
}

/** The operator's view: fleet-wide counts, partners, their key rotation, pgfleet's token signing key. */
export function OperatorPage() {
  const [fleet, setFleet] = useState<Fleet | null>(null);
  const [rates, setRates] = useState<{ wakes: number; authFailures: number } | null>(null);
  const [partners, setPartners] = useState<Partner[] | null>(null);
  const [pollError, setPollError] = useState<unknown>(null);
  const [shownKey, setShownKey] = useState<PartnerWithKey | null>(null);
  const [confirm, setConfirm] = useState<Partner | null>(null);
  const [name, setName] = useState('');
  const [kid, setKid] = useState<string | null>(null);
  const action = useAction();
  const rate = useRates();
  const partnersEtag = useRef<{ value?: string }>({});
  const [usage, setUsage] = useState<PartnerUsage | null>(null);

  usePolling(async () => {
    try {
      const f = await api<Fleet>('GET', '/v1/fleet');
      setFleet(f);
      setRates(rate(f));
      const p = await poll<{ partners: Partner[] }>('/v1/partners', partnersEtag.current);
      if (p) setPartners(p.partners);
      setUsage(await api<PartnerUsage>('GET', '/v1/usage/partners'));
      setPollError(null);
    } catch (err) {
      setPollError(err);
    }
  }, POLL_MS, []);

  const create = async (e: Event) => {
    e.preventDefault();
    const p = await action.run(() => api<PartnerWithKey>('POST', '/v1/partners', { name: name.trim() }));
    if (p) {
      setShownKey(p);
      setName('');
      setPartners([...(partners ?? []), p]);
    }
  };
  const rotate = async (partner: Partner) => {
    setConfirm(null);
    const p = await action.run(() => api<PartnerWithKey>('POST', `/v1/partners/${encodeURIComponent(partner.id)}/keys`));
    if (p) setShownKey(p);
  };
  const rotateSigningKey = async () => {
    const answer = await action.run(() => api<{ kid: string }>('POST', '/v1/keys/rotate'));
    if (answer) setKid(answer.kid);
  };

  const used = (id: string) => usage?.partners.find((u) => u.partner_id === id)?.usage ?? {};
  return (
    <>
      <h1>Operator</h1>
      <ErrorNote error={pollError} />
      {fleet ? <Counts fleet={fleet} rates={rates} /> : <p aria-busy="true">Loading counts…</p>}
      <ErrorNote error={action.error} />
      {shownKey && (
        <OneTime title={`API key of ${shownKey.name}`} onDone={() => setShownKey(null)}>
          <CopyField label={`API key of ${shownKey.name}`} value={shownKey.api_key} secret />
        </OneTime>
      )}
      <section aria-labelledby="partners-title">
        <div class="page-head">
          <h2 id="partners-title">Partners</h2>
          <form class="inline" onSubmit={create}>
            <label for="partner-name">New partner</label>
            <input id="partner-name" required value={name} onInput={(e) => setName(e.currentTarget.value)} placeholder="name" />
            <button type="submit" disabled={action.busy}>Create</button>
          </form>
        </div>
        {partners === null ? <p aria-busy="true">Loading…</p> : partners.length === 0 ? <p class="empty">No partners yet.</p> : (
          <div class="table-wrap">
            <table>
              <caption class="visually-hidden">Partners with their usage this month</caption>
              <thead><tr>
                <th scope="col">Name</th><th scope="col">Id</th><th scope="col" class="num">Databases</th>
                <th scope="col" class="num">Compute this month</th><th scope="col" class="num">Transfer this month</th><th scope="col" class="num wide-only">Storage now</th>
                <th scope="col" class="wide-only">Created</th><th scope="col"><span class="visually-hidden">Actions</span></th>
              </tr></thead>
              <tbody>
                {partners.map((p) => (
                  <tr key={p.id}>
                    <td>{p.name}</td>
                    <td><code>{p.id}</code></td>
                    <td class="num">{count(fleet?.databases_by_partner[p.id] ?? 0)}</td>
                    <td class="num" data-usage="compute">{duration(used(p.id).compute_time_seconds ?? 0)}</td>
                    <td class="num">{bytes(used(p.id).data_transfer_bytes ?? 0)}</td>
                    <td class="num wide-only">{bytes(used(p.id).storage_bytes ?? 0)}</td>
                    <td class="wide-only">{dateTime(p.created_at)}</td>
                    <td><button type="button" class="secondary small" onClick={() => setConfirm(p)} aria-label={`Rotate the API key of ${p.name}`}>Rotate key</button></td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
      </section>
      <RecentFailures />
      <section aria-labelledby="signing-title" class="card">
        <h2 id="signing-title">Token signing key</h2>
        <p class="hint">A new key signs pgfleet's tokens from now on; tokens signed with the old one keep working until they expire.</p>
        <button type="button" class="secondary" disabled={action.busy} onClick={rotateSigningKey}>Rotate signing key</button>
        {kid && <p role="status" class="ok">New signing key <code>{kid}</code></p>}
      </section>
      <Dialog title="Rotate API key" open={confirm !== null} onClose={() => setConfirm(null)}>
        {confirm && (
          <>
            <p>Give <strong>{confirm.name}</strong> a new API key? Its current key stops working at once.</p>
            <div class="actions">
              <button type="button" class="danger" onClick={() => rotate(confirm)}>Rotate key</button>
              <button type="button" class="secondary" onClick={() => setConfirm(null)}>Cancel</button>
            </div>
          </>
        )}
      </Dialog>
    </>
  );
}
