import type { ComponentChildren } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import { ApiError } from './api.ts';
import { type Unit, formatIn } from './format.ts';
import type { State } from './types.ts';

/** An error as the API worded it; nothing fails silently. */
export function ErrorNote({ error }: { error: unknown }) {
  if (!error) return null;
  const text = error instanceof ApiError ? `${error.message}${error.status ? ` (${error.status} ${error.code})` : ''}` : error instanceof Error ? error.message : String(error);
  return <p class="error" role="alert">{text}</p>;
}

/** Runs API actions one at a time, keeping whether one is under way and the last error. */
export function useAction() {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const run = async <T,>(fn: () => Promise<T>): Promise<T | undefined> => {
    setBusy(true);
    setError(null);
    try {
      return await fn();
    } catch (err) {
      setError(err);
      return undefined;
    } finally {
      setBusy(false);
    }
  };
  return { busy, error, setError, run };
}

/** Calls fn now and every `ms` while the tab is visible; restarts when deps change. */
export function usePolling(fn: () => Promise<void>, ms: number, deps: unknown[]) {
  const latest = useRef(fn);
  latest.current = fn;
  useEffect(() => {
    let stopped = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const tick = async () => {
      if (stopped) return;
      if (!document.hidden) await latest.current().catch(() => {});
      if (!stopped) timer = setTimeout(tick, ms);
    };
    void tick();
    return () => {
      stopped = true;
      clearTimeout(timer);
    };
  }, deps);
}

export function CopyButton({ text, label }: { text: string; label: string }) {
  const [copied, setCopied] = useState<'yes' | 'failed' | null>(null);
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(text);
      setCopied('yes');
    } catch {
      setCopied('failed');
    }
    setTimeout(() => setCopied(null), 1500);
  };
  return (
    <button type="button" class="copy" onClick={copy} aria-label={`Copy ${label}`}>
      {copied === 'yes' ? 'Copied' : copied === 'failed' ? 'Select and copy' : 'Copy'}
    </button>
  );
}

let fieldIds = 0;
/** A read-only value with its label and a copy button. */
export function CopyField({ label, value, secret }: { label: string; value: string; secret?: boolean }) {
  const id = useRef(`copy-${++fieldIds}`).current;
  return (
    <div class={`copy-field${secret ? ' secret' : ''}`}>
      <label for={id}>{label}</label>
      <div class="copy-row">
        <input id={id} readOnly value={value} spellcheck={false} onFocus={(e) => (e.currentTarget as HTMLInputElement).select()} />
        <CopyButton text={value} label={label} />
      </div>
    </div>
  );
}

/** What the API shows only once (a password, a key, a token): shown until dismissed, never fetched again. */
export function OneTime({ title, children, onDone }: { title: string; children: ComponentChildren; onDone: () => void }) {
  const ref = useRef<HTMLElement>(null);
  useEffect(() => ref.current?.focus(), []);
  return (
    <section class="one-time" tabIndex={-1} ref={ref} aria-labelledby="one-time-title">
      <h3 id="one-time-title">{title}</h3>
      <p class="hint">Shown this once: pgfleet keeps only a hash and cannot show it again.</p>
      {children}
      <button type="button" onClick={onDone}>I have saved it</button>
    </section>
  );
}

export function StateBadge({ state }: { state: State }) {
  return <span class={`state state-${state}`}>{state}</span>;
}

/** Use against a limit: a bar when there is a quota, the amount alone when there is none. */
export function UsageBar({ label, used, quota, unit }: { label: string; used: number; quota: number | null | undefined; unit: Unit }) {
  const limited = quota !== null && quota !== undefined;
  const ratio = limited ? (quota === 0 ? (used > 0 ? 1 : 0) : Math.min(1, used / quota)) : 0;
  const text = `${formatIn(unit, used)}${limited ? ` of ${formatIn(unit, quota)}` : ''}`;
  const level = ratio >= 1 ? 'over' : ratio >= 0.8 ? 'high' : 'ok';
  return (
    <div class="usage-bar" title={`${label}: ${text}${limited ? '' : ' (no quota)'}`}>
      <span class="usage-label">{label}</span>
      <span
        class={`bar bar-${limited ? level : 'none'}`}
        role="meter"
        aria-label={label}
        aria-valuemin={0}
        aria-valuemax={limited ? quota : undefined}
        aria-valuenow={used}
        aria-valuetext={text}
      >
        <span class="fill" style={{ width: `${Math.round(ratio * 100)}%` }} />
      </span>
      <span class="usage-value">{text}</span>
    </div>
  );
}

/** A modal dialog (native <dialog>: focus stays inside, Escape closes). */
export function Dialog({ title, open, onClose, children }: { title: string; open: boolean; onClose: () => void; children: ComponentChildren }) {
  const ref = useRef<HTMLDialogElement>(null);
  useEffect(() => {
    const d = ref.current;
    if (!d) return;
    if (open && !d.open) d.showModal();
    if (!open && d.open) d.close();
  }, [open]);
  return (
    <dialog ref={ref} onClose={onClose} aria-label={title}>
      <h2>{title}</h2>
      {open && children}
    </dialog>
  );
}

/** Previous and Next over pages the API gives with a cursor; `cursors[i]` opens page i, the last one is shown. */
export function Pager({ cursors, next, onChange }: { cursors: (string | undefined)[]; next: string | null | undefined; onChange: (c: (string | undefined)[]) => void }) {
  return (
    <nav class="pager" aria-label="Pages">
      <button type="button" class="secondary" disabled={cursors.length === 1} onClick={() => onChange(cursors.slice(0, -1))}>Previous</button>
      <span>Page {cursors.length}</span>
      <button type="button" class="secondary" disabled={!next} onClick={() => next && onChange([...cursors, next])}>Next</button>
    </nav>
  );
}
