import 'uplot/dist/uPlot.min.css';
import './style.css';
import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { type Kind, signIn, signOut, storedKey, whenSignedOut } from './api.ts';
import { DatabasePage } from './database.tsx';
import { EventStream } from './events.tsx';
import { OperatorDatabases } from './operator-databases.tsx';
import { FleetPage } from './fleet.tsx';
import { MigrationsPage } from './migrations.tsx';
import { OperatorPage } from './operator.tsx';
import { SignIn } from './sign-in.tsx';

/** The part of the address after '#': '/' (home) or '/databases/<id>'. */
function useRoute(): string {
  const read = () => location.hash.replace(/^#/, '') || '/';
  const [route, setRoute] = useState(read);
  useEffect(() => {
    const changed = () => setRoute(read());
    addEventListener('hashchange', changed);
    return () => removeEventListener('hashchange', changed);
  }, []);
  return route;
}

type Session = { status: 'checking' } | { status: 'out'; reason: string } | { status: 'in'; kind: Kind };

function App() {
  // A key kept in this tab is checked again before anything is shown.
  const [session, setSession] = useState<Session>(() => (storedKey() ? { status: 'checking' } : { status: 'out', reason: '' }));
  const route = useRoute();
  useEffect(() => {
    whenSignedOut((reason) => setSession({ status: 'out', reason }));
    const key = storedKey();
    if (key) signIn(key).then((kind) => setSession({ status: 'in', kind }), (err) => signOut(err.message));
  }, []);

  if (session.status === 'checking') return <main id="main" class="signed-out"><p aria-busy="true">Checking the saved key…</p></main>;
  if (session.status === 'out') return <SignIn reason={session.reason} onSignedIn={(kind) => setSession({ status: 'in', kind })} />;

  const dbMatch = /^\/databases\/([^/]+)$/.exec(route);
  const operator = session.kind === 'operator';
  const link = (href: string, label: string, path: string) => <a href={href} aria-current={route === path ? 'page' : undefined}>{label}</a>;
  const page = dbMatch ? <DatabasePage id={decodeURIComponent(dbMatch[1]!)} operator={operator} />
    : route === '/events' ? <EventStream title={operator ? 'Events of every partner' : 'Events'} />
    : route === '/migrations' ? <MigrationsPage operator={operator} />
    : operator ? (route === '/databases' ? <OperatorDatabases /> : <OperatorPage />) : <FleetPage />;
  return (
    <>
      <a class="skip" href="#main" onClick={(e) => { e.preventDefault(); document.getElementById('main')?.focus(); }}>Skip to content</a>
      <header class="top">
        <a class="brand" href="#/">pgfleet <span>console</span></a>
        <nav aria-label="Main">
          {link('#/', operator ? 'Operator' : 'Fleet', '/')}
          {operator && link('#/databases', 'Databases', '/databases')}
          {link('#/migrations', 'Migrations', '/migrations')}
          {link('#/events', 'Events', '/events')}
          <a href="/docs">API docs</a>
        </nav>
        <span class="who">{session.kind === 'operator' ? 'operator key' : 'partner key'}</span>
        <button type="button" class="secondary" onClick={() => { location.hash = ''; signOut(); }}>Sign out</button>
      </header>
      <main id="main" tabIndex={-1}>
        {page}
      </main>
    </>
  );
}

render(<App />, document.getElementById('app')!);
