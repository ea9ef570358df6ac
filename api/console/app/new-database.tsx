import { useState } from 'preact/hooks';
import { api } from './api.ts';
import type { Credentials, Database } from './types.ts';
import { CopyField, Dialog, ErrorNote, OneTime, useAction } from './ui.tsx';

/** Shows a role's new password and URIs, the one time the API gives them. */
export function CredentialsOnce({ title, credentials, onDone }: { title: string; credentials: Credentials; onDone: () => void }) {
  return (
    <OneTime title={title} onDone={onDone}>
      <CopyField label={`Password of ${credentials.role}`} value={credentials.password} secret />
      <CopyField label="Connection string" value={credentials.connection_uri} secret />
      <CopyField label="Connection string (no SNI)" value={credentials.connection_uri_no_sni} secret />
    </OneTime>
  );
}

/** "New database": POST /v1/databases, then the password once. */
export function NewDatabase({ onCreated }: { onCreated: () => void }) {
  const [open, setOpen] = useState(false);
  const [form, setForm] = useState({ user_id: '', name: '', region: '' });
  const [created, setCreated] = useState<(Database & Credentials) | null>(null);
  const { busy, error, setError, run } = useAction();
  const submit = async (e: Event) => {
    e.preventDefault();
    const body: Record<string, string> = { user_id: form.user_id };
    if (form.name) body.name = form.name;
    if (form.region) body.region = form.region;
    const db = await run(() => api<Database & Credentials>('POST', '/v1/databases', body));
    if (db) {
      setOpen(false);
      setCreated({ ...db, role: db.role });
      setForm({ user_id: '', name: '', region: '' });
      onCreated();
    }
  };
  return (
    <>
      <button type="button" onClick={() => { setError(null); setOpen(true); }}>New database</button>
      <Dialog title="New database" open={open} onClose={() => setOpen(false)}>
        <form onSubmit={submit} class="stack">
          <label for="new-user">User id</label>
          <input id="new-user" required value={form.user_id} onInput={(e) => setForm({ ...form, user_id: e.currentTarget.value })} />
          <label for="new-name">Name <span class="hint">(optional)</span></label>
          <input id="new-name" value={form.name} onInput={(e) => setForm({ ...form, name: e.currentTarget.value })} />
          <label for="new-region">Region <span class="hint">(optional; default the first)</span></label>
          <input id="new-region" value={form.region} onInput={(e) => setForm({ ...form, region: e.currentTarget.value })} />
          <ErrorNote error={error} />
          <div class="actions">
            <button type="submit" disabled={busy}>{busy ? 'Creating…' : 'Create'}</button>
            <button type="button" class="secondary" onClick={() => setOpen(false)}>Cancel</button>
          </div>
        </form>
      </Dialog>
      {created && (
        <div class="overlay-note">
          <CredentialsOnce title={`Created ${created.name ?? created.id}`} credentials={created} onDone={() => setCreated(null)} />
        </div>
      )}
    </>
  );
}
