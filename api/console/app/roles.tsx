import { useState } from 'preact/hooks';
import { api } from './api.ts';
import { CredentialsOnce } from './new-database.tsx';
import type { Credentials, Database } from './types.ts';
import { ErrorNote, useAction } from './ui.tsx';

/** Login roles: add one, or reset one's password; each new password is shown once. */
export function Roles({ db, onChanged }: { db: Database; onChanged: (db: Database) => void }) {
  const [name, setName] = useState('');
  const [shown, setShown] = useState<{ title: string; credentials: Credentials } | null>(null);
  const { busy, error, run } = useAction();
  const base = `/v1/databases/${encodeURIComponent(db.id)}`;

  const reset = async (role: string) => {
    const c = await run(() => api<Credentials>('POST', `${base}/roles/${encodeURIComponent(role)}/reset_password`));
    if (c) setShown({ title: `New password of ${role}`, credentials: c });
  };
  const add = async (e: Event) => {
    e.preventDefault();
    const c = await run(() => api<Credentials>('POST', `${base}/roles`, { name: name.trim() }));
    if (c) {
      setShown({ title: `Role ${c.role} added`, credentials: c });
      setName('');
      onChanged({ ...db, roles: [...db.roles, c.role] });
    }
  };
  return (
    <section aria-labelledby="roles-title" class="card">
      <h2 id="roles-title">Roles</h2>
      <ul class="roles">
        {db.roles.map((role) => (
          <li key={role}>
            <code>{role}</code>{role === db.role && <span class="sub"> owner</span>}
            <button type="button" class="secondary small" disabled={busy} onClick={() => reset(role)} aria-label={`Reset password of ${role}`}>Reset password</button>
          </li>
        ))}
      </ul>
      <form onSubmit={add} class="inline">
        <label for="role-name">New role</label>
        <input id="role-name" required value={name} onInput={(e) => setName(e.currentTarget.value)} placeholder="reader" />
        <button type="submit" disabled={busy}>Add role</button>
      </form>
      <ErrorNote error={error} />
      {shown && <CredentialsOnce title={shown.title} credentials={shown.credentials} onDone={() => setShown(null)} />}
    </section>
  );
}
