import { useEffect, useRef, useState } from 'preact/hooks';
import uPlot from 'uplot';
import { api } from './api.ts';
import type { ComputeSizeHistory, Database } from './types.ts';
import { ErrorNote, useAction, usePolling } from './ui.tsx';

const POLL_MS = 5000;
const HOUR_MS = 3_600_000;
/** The sizes a range can name: multiples of 0.25 CU up to 16. */
const SIZES = Array.from({ length: 64 }, (_, i) => (i + 1) / 4);

const cssVar = (name: string) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();

/** The size as a step line over the last hour (each change holds until the next), the range as dashed lines. */
function SizePlot({ history }: { history: ComputeSizeHistory }) {
  const box = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const now = Date.now() / 1000;
    const points = history.sizes.map((p) => [Date.parse(p.at) / 1000, p.cu] as const);
    // The last size holds until now.
    const x = [...points.map((p) => p[0]), now];
    const y = [...points.map((p) => p[1]), points.at(-1)?.[1] ?? history.current_cu];
    const axis = { stroke: cssVar('--muted'), grid: { stroke: cssVar('--line'), width: 1 }, ticks: { stroke: cssVar('--line'), width: 1 } };
    const chart = new uPlot({
      width: el.clientWidth || 500,
      height: 200,
      series: [
        {},
        { label: 'size (CU)', stroke: cssVar('--accent'), fill: cssVar('--accent-soft'), width: 2, paths: uPlot.paths.stepped!({ align: 1 }), points: { show: false } },
        { label: 'floor', stroke: cssVar('--muted'), dash: [4, 4], points: { show: false } },
        { label: 'ceiling', stroke: cssVar('--danger'), dash: [6, 4], points: { show: false } },
      ],
      scales: { x: { time: true, range: () => [now - HOUR_MS / 1000, now] }, y: { range: () => [0, history.autoscaling.max_cu * 1.15] } },
      axes: [axis, { ...axis, size: 50, values: (_u, splits) => splits.map((v) => `${v} CU`) }],
      cursor: { drag: { x: false, y: false } },
    }, [x, y, x.map(() => history.autoscaling.min_cu), x.map(() => history.autoscaling.max_cu)], el);
    const resize = new ResizeObserver(() => chart.setSize({ width: el.clientWidth, height: 200 }));
    resize.observe(el);
    return () => {
      resize.disconnect();
      chart.destroy();
    };
  }, [history]);
  const changes = Math.max(0, history.sizes.length - 1);
  return <div ref={box} class="plot" role="img" aria-label={`Compute size over the last hour: ${changes} ${changes === 1 ? 'change' : 'changes'}, now ${history.current_cu} CU, range ${history.autoscaling.min_cu}–${history.autoscaling.max_cu} CU`} />;
}

/** The range (floor and ceiling), the size now, its chart over the last hour, and (for its partner) a form to change the range. */
export function ComputeSize({ db, onSaved, readOnly }: { db: Database; onSaved: (db: Database) => void; readOnly: boolean }) {
  const [history, setHistory] = useState<ComputeSizeHistory | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [range, setRange] = useState({ min: db.autoscaling.min_cu, max: db.autoscaling.max_cu });
  const [saved, setSaved] = useState(false);
  const action = useAction();
  useEffect(() => setRange({ min: db.autoscaling.min_cu, max: db.autoscaling.max_cu }), [db.autoscaling.min_cu, db.autoscaling.max_cu]);
  usePolling(async () => {
    try {
      const from = new Date(Date.now() - HOUR_MS).toISOString();
      setHistory(await api<ComputeSizeHistory>('GET', `/v1/databases/${encodeURIComponent(db.id)}/compute_sizes?from=${encodeURIComponent(from)}`));
      setError(null);
    } catch (err) {
      setError(err);
    }
  }, POLL_MS, [db.id, db.autoscaling.min_cu, db.autoscaling.max_cu]);
  const save = async (e: Event) => {
    e.preventDefault();
    const answer = await action.run(() => api<Database>('PATCH', `/v1/databases/${encodeURIComponent(db.id)}`, { autoscaling: { min_cu: range.min, max_cu: range.max } }));
    if (answer) {
      setSaved(true);
      onSaved(answer);
    }
  };
  const pick = (id: string, label: string, value: number, set: (v: number) => void) => (
    <>
      <label for={id}>{label}</label>
      <select id={id} value={String(value)} onChange={(e) => { set(Number(e.currentTarget.value)); setSaved(false); }}>
        {SIZES.map((s) => <option value={String(s)}>{s} CU</option>)}
      </select>
    </>
  );
  return (
    <section aria-labelledby="size-title" class="card size">
      <h2 id="size-title">Compute size</h2>
      <p class="sub" data-current-cu={db.current_cu}>Now <strong>{db.current_cu} CU</strong> · autoscaling {db.autoscaling.min_cu}–{db.autoscaling.max_cu} CU (1 CU = 1 CPU, 4 GiB)</p>
      <ErrorNote error={error} />
      {history && <SizePlot history={history} />}
      {!readOnly && (
        <form onSubmit={save} class="stack range" novalidate>
          {pick('min-cu', 'Floor (it never goes below)', range.min, (min) => setRange({ ...range, min }))}
          {pick('max-cu', 'Ceiling (it never goes above)', range.max, (max) => setRange({ ...range, max }))}
          <ErrorNote error={action.error} />
          <div class="actions">
            <button type="submit" disabled={action.busy}>Apply range</button>
            {saved && <span role="status" class="ok">Range applied</span>}
          </div>
        </form>
      )}
    </section>
  );
}
