/** `pgfleet db sizes`: a database's size range, its size now, and the sizes it took over time as a text chart. */
import { CliError } from '../cli-error.ts';
import { type Command, arg, enc, print } from './command.ts';

const BARS = ' ▁▂▃▄▅▆▇█';
/** Columns of the chart: one per equal slice of the time shown. */
const WIDTH = 60;

/** `0.25-2` (or `1`) as {min_cu, max_cu}; the API checks the grid and the bounds. */
export function rangeOption(value: unknown): { min_cu: number; max_cu: number } | undefined {
  if (value === undefined) return undefined;
  const m = typeof value === 'string' ? /^([\d.]+)(?:-([\d.]+))?$/.exec(value) : null;
  if (!m) throw new CliError('--autoscaling needs floor-ceiling in compute units, such as 0.25-2');
  return { min_cu: Number(m[1]), max_cu: Number(m[2] ?? m[1]) };
}

/** The size held in each of WIDTH slices of [from, to] (the largest in the slice), drawn on the ceiling's scale. */
export function sizeChart(sizes: { at: string; cu: number }[], from: number, to: number, ceiling: number): string {
  const step = (to - from) / WIDTH;
  let out = '';
  for (let col = 0; col < WIDTH; col++) {
    const [start, end] = [from + col * step, from + (col + 1) * step];
    let held = 0;
    for (let i = 0; i < sizes.length; i++) {
      const begins = Date.parse(sizes[i]!.at);
      const ends = i + 1 < sizes.length ? Date.parse(sizes[i + 1]!.at) : to;
      if (begins < end && ends > start) held = Math.max(held, sizes[i]!.cu);
    }
    out += BARS[Math.round((held / ceiling) * (BARS.length - 1))] ?? BARS.at(-1);
  }
  return out;
}

export const sizeCommands: Command[] = [{
  name: 'db sizes', usage: '<database id> [--from <time>]', summary: 'its autoscaling range, its size now, and a chart of its size over time (default: the last hour)',
  async run(ctx) {
    const id = arg(ctx, 0, 'a database id', 'db sizes');
    const q = typeof ctx.v.from === 'string' ? `?from=${enc(ctx.v.from)}` : '';
    const h = await ctx.api.call('GET', `/v1/databases/${enc(id)}/compute_sizes${q}`);
    const to = Date.now();
    const from = typeof ctx.v.from === 'string' ? Date.parse(ctx.v.from) : to - 3_600_000;
    print(ctx, h, () => [
      `range: ${h.autoscaling.min_cu}–${h.autoscaling.max_cu} CU, now: ${h.current_cu} CU`,
      `${h.autoscaling.max_cu} CU ┤${sizeChart(h.sizes, from, to, h.autoscaling.max_cu)}`,
      `${' '.repeat(String(h.autoscaling.max_cu).length)}    ${new Date(from).toISOString().slice(11, 19)}${' '.repeat(WIDTH - 16)}${new Date(to).toISOString().slice(11, 19)}`,
    ]);
  },
}];
