import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import uPlot from 'uplot';
import { api, query } from './api.ts';
import { type Unit, formatIn, monthStart } from './format.ts';
import type { Database, DatabaseUsage, QuotaName } from './types.ts';
import { ErrorNote, usePolling } from './ui.tsx';

const METRICS: { key: string; label: string; unit: Unit; quota?: QuotaName; level?: boolean }[] = [
  { key: 'compute_time_seconds', label: 'Compute time', unit: 'time', quota: 'compute_time_seconds' },
  { key: 'compute_unit_seconds', label: 'Compute unit time (size × time)', unit: 'time', quota: 'compute_unit_seconds' },
  { key: 'active_time_seconds', label: 'Active time', unit: 'time' },
  { key: 'data_transfer_bytes', label: 'Data transfer', unit: 'bytes', quota: 'data_transfer_bytes' },
  { key: 'written_data_bytes', label: 'Written data', unit: 'bytes', quota: 'written_data_bytes' },
  { key: 'storage_bytes', label: 'Storage', unit: 'bytes', quota: 'storage_bytes', level: true },
];

type Granularity = 'hourly' | 'daily' | 'monthly';
const GRANULARITIES: Record<Granularity, { label: string; per: string; periods: number }> = {
  hourly: { label: 'Hourly, last 48 hours', per: 'per hour', periods: 48 },
  daily: { label: 'Daily, last 31 days', per: 'per day', periods: 31 },
  monthly: { label: 'Monthly, last 12 months', per: 'per month', periods: 12 },
};
const POLL_MS = 30_000;

/** The start of every period of the range, oldest first, UTC (as the API buckets them). */
function periodStarts(g: Granularity, now = new Date()): Date[] {
  const n = GRANULARITIES[g].periods;
  const out: Date[] = [];
  for (let i = n - 1; i >= 0; i--) {
    if (g === 'monthly') out.push(new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() - i, 1)));
    else {
      const step = g === 'hourly' ? 3_600_000 : 86_400_000;
      out.push(new Date(Math.floor(now.getTime() / step) * step - i * step));
    }
  }
  return out;
}

interface Series {
  x: number[];
  perPeriod: (number | null)[];
  /** Sums restart each UTC month, where monthly quotas restart. */
  monthToDate: number[] | null;
  quota: number | null;
  points: number;
}

function seriesOf(metric: (typeof METRICS)[number], starts: Date[], usage: DatabaseUsage, db: Database, g: Granularity): Series {
  const byStart = new Map(usage.periods.map((p) => [Date.parse(p.period_start), p.usage]));
  const values = starts.map((s) => byStart.get(s.getTime())?.[metric.key] ?? null);
  const quota = metric.quota ? db.quotas[metric.quota] ?? null : null;
  let monthToDate: number[] | null = null;
  if (!metric.level && g !== 'monthly') {
    let sum = 0;
    let month = -1;
    monthToDate = starts.map((s, i) => {
      const m = monthStart(s).getTime();
      if (m !== month) [month, sum] = [m, 0];
      return (sum += values[i] ?? 0);
    });
  }
  return {
    x: starts.map((s) => s.getTime() / 1000),
    perPeriod: metric.level ? values : values.map((v) => v ?? 0),
    monthToDate,
    quota,
    points: values.filter((v) => v !== null && v > 0).length,
  };
}

const cssVar = (name: string) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();

function useColorScheme(): string {
  const query = matchMedia('(prefers-color-scheme: dark)');
  const [scheme, setScheme] = useState(query.matches ? 'dark' : 'light');
  useEffect(() => {
    const changed = () => setScheme(query.matches ? 'dark' : 'light');
    query.addEventListener('change', changed);
    return () => query.removeEventListener('change', changed);
  }, []);
  return scheme;
}

/** One metric as a uPlot chart (bars per period, the month-to-date line, the quota as a dashed line), and as a table. */
function Chart({ metric, series, granularity }: { metric: (typeof METRICS)[number]; series: Series; granularity: Granularity }) {
  const box = useRef<HTMLDivElement>(null);
  const scheme = useColorScheme();
  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const fg = cssVar('--muted');
    const grid = cssVar('--line');
    const fmt = (v: number | null) => (v === null ? '–' : formatIn(metric.unit, v));
    const s: uPlot.Series[] = [{}];
    const data: uPlot.AlignedData = [series.x];
    s.push({
      label: metric.level ? 'highest' : GRANULARITIES[granularity].per,
      stroke: cssVar('--accent'),
      fill: cssVar('--accent-soft'),
      paths: metric.level ? undefined : uPlot.paths.bars!({ size: [0.7, 40] }),
      points: { show: metric.level === true },
      spanGaps: true,
      value: (_u, v) => fmt(v),
    });
    data.push(series.perPeriod);
    if (series.monthToDate) {
      s.push({ label: 'month to date', stroke: cssVar('--accent-2'), width: 2, points: { show: false }, value: (_u, v) => fmt(v) });
      data.push(series.monthToDate);
    }
    if (series.quota !== null) {
      s.push({ label: 'quota', stroke: cssVar('--danger'), width: 1.5, dash: [6, 4], points: { show: false }, value: (_u, v) => fmt(v) });
      data.push(series.x.map(() => series.quota));
    }
    const axis = { stroke: fg, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 } };
    const chart = new uPlot({
      width: el.clientWidth || 500,
      height: 220,
      series: s,
      scales: { x: { time: true }, y: { range: (_u, _min, max) => [0, max > 0 ? max * 1.1 : 1] } },
      axes: [axis, { ...axis, size: 70, values: (_u, splits) => splits.map((v) => formatIn(metric.unit, v)) }],
      cursor: { drag: { x: false, y: false } },
    }, data, el);
    const resize = new ResizeObserver(() => chart.setSize({ width: el.clientWidth, height: 220 }));
    resize.observe(el);
    return () => {
      resize.disconnect();
      chart.destroy();
    };
  }, [series, scheme]);

  const total = metric.level ? Math.max(0, ...series.perPeriod.map((v) => v ?? 0)) : series.perPeriod.reduce<number>((a, v) => a + (v ?? 0), 0);
  const summary = `${metric.label} ${GRANULARITIES[granularity].per}: ${series.points} ${series.points === 1 ? 'period' : 'periods'} with use, ${metric.level ? 'highest' : 'total'} ${formatIn(metric.unit, total)}${series.quota !== null ? `, quota ${formatIn(metric.unit, series.quota)}` : ', no quota'}`;
  return (
    <figure class="chart card" data-metric={metric.key} data-points={series.points}>
      <figcaption>
        <strong>{metric.label}</strong>
        <span class="sub">{metric.level ? 'highest' : 'total'} {formatIn(metric.unit, total)}{series.quota !== null ? ` · quota ${formatIn(metric.unit, series.quota)}${metric.level ? '' : ' a month'}` : ' · no quota'}</span>
      </figcaption>
      <div ref={box} class="plot" role="img" aria-label={summary} />
      <details>
        <summary>As a table</summary>
        <table class="compact">
          <thead><tr><th scope="col">Period (UTC)</th><th scope="col" class="num">{metric.label}</th>{series.monthToDate && <th scope="col" class="num">Month to date</th>}</tr></thead>
          <tbody>
            {series.x.map((t, i) => series.perPeriod[i] ? (
              <tr key={t}>
                <td>{new Date(t * 1000).toISOString().slice(0, granularity === 'hourly' ? 16 : granularity === 'daily' ? 10 : 7).replace('T', ' ')}</td>
                <td class="num">{formatIn(metric.unit, series.perPeriod[i]!)}</td>
                {series.monthToDate && <td class="num">{formatIn(metric.unit, series.monthToDate[i]!)}</td>}
              </tr>
            ) : null)}
          </tbody>
        </table>
      </details>
    </figure>
  );
}

/** A database's usage per hour, day or month from GET /v1/databases/:id/usage, one chart per metric. */
export function UsageCharts({ db }: { db: Database }) {
  const [granularity, setGranularity] = useState<Granularity>('daily');
  const [usage, setUsage] = useState<{ starts: Date[]; answer: DatabaseUsage } | null>(null);
  const [error, setError] = useState<unknown>(null);
  usePolling(async () => {
    const starts = periodStarts(granularity);
    try {
      const answer = await api<DatabaseUsage>('GET', `/v1/databases/${encodeURIComponent(db.id)}/usage${query({ granularity, from: starts[0]!.toISOString() })}`);
      setUsage({ starts, answer });
      setError(null);
    } catch (err) {
      setError(err);
    }
  }, POLL_MS, [db.id, granularity]);
  const shownGranularity = (usage?.answer.granularity ?? granularity) as Granularity;
  const quotas = JSON.stringify(db.quotas);
  // Charts are redrawn when the usage or the quotas change, not on every poll of the database.
  const series = useMemo(() => usage && METRICS.map((m) => seriesOf(m, usage.starts, usage.answer, db, shownGranularity)), [usage, quotas]);
  return (
    <section aria-labelledby="usage-title" class="usage">
      <div class="page-head">
        <h2 id="usage-title">Usage</h2>
        <div class="field inline">
          <label for="granularity">Periods</label>
          <select id="granularity" value={granularity} onChange={(e) => setGranularity(e.currentTarget.value as Granularity)}>
            {Object.entries(GRANULARITIES).map(([g, { label }]) => <option value={g}>{label}</option>)}
          </select>
        </div>
      </div>
      <ErrorNote error={error} />
      {!series ? <p aria-busy="true">Loading usage…</p> : (
        <div class="charts">
          {METRICS.map((m, i) => <Chart key={`${m.key}-${shownGranularity}`} metric={m} granularity={shownGranularity} series={series[i]!} />)}
        </div>
      )}
    </section>
  );
}
