import { useState } from 'preact/hooks';
import { type Kind, signIn } from './api.ts';
import { ErrorNote, useAction } from './ui.tsx';

/** The only thing a signed-out console shows. */
export function SignIn({ reason, onSignedIn }: { reason: string; onSignedIn: (kind: Kind) => void }) {
  const [key, setKey] = useState('');
  const { busy, error, run } = useAction();
  const submit = async (e: Event) => {
    e.preventDefault();
    const kind = await run(() => signIn(key.trim()));
    if (kind) onSignedIn(kind);
  };
  return (
    <main id="main" class="signed-out">
      <form class="sign-in card" onSubmit={submit}>
        <h1>pgfleet console</h1>
        <p class="hint">Sign in with a partner API key or the operator key. The key stays in this tab only (session storage) and goes with every API call.</p>
        {reason && <p class="notice" role="status">Signed out: {reason}</p>}
        <label for="api-key">API key</label>
        <input id="api-key" type="password" autocomplete="off" required value={key} onInput={(e) => setKey(e.currentTarget.value)} />
        <ErrorNote error={error} />
        <button type="submit" disabled={busy || !key.trim()}>{busy ? 'Signing in…' : 'Sign in'}</button>
      </form>
    </main>
  );
}
