// Attacks on the auth limits: wrong passwords and junk tokens from a few addresses must slow
// and refuse the attackers, never the owner (issue 16, items 2 and 3).
import t from 'tap';
import { forge, nowSeconds } from '../jwt-helpers.ts';
import { psql, startProxyFixture } from '../proxy-helpers.ts';
import { attempt } from './wire-attacker.ts';

const PER_ADDRESS = 20;
const f = await startProxyFixture({}, { authLimits: { perAddress: PER_ADDRESS, slowTargetAfter: 10, slowFailureMs: 20 } });
t.teardown(() => f.stop());
const attackers = ['127.0.0.2', '127.0.0.3', '127.0.0.4', '127.0.0.5', '127.0.0.6'];

/** `n` attempts in a row from one address; the server's answers in order. */
async function series(from: string, n: number, user: string, password: () => string): Promise<string[]> {
  const answers: string[] = [];
  for (let i = 0; i < n; i++) answers.push(await attempt({ port: f.proxy.port, from, user, password: password() }));
  return answers;
}

t.test('a password flood from five addresses does not lock the owner out of a public endpoint', async (t) => {
  const db = await f.createDatabase();
  const floods = await Promise.all(attackers.map((from) => series(from, PER_ADDRESS + 5, db.role, () => `endpoint=${db.endpointId};guess`)));
  for (const answers of floods) {
    t.ok(answers.slice(0, PER_ADDRESS).every((a) => /password authentication failed/.test(a)), 'each address gets its failures');
    t.ok(answers.slice(PER_ADDRESS).every((a) => /too many failed authentication attempts from this address/.test(a)), 'then that address is refused');
  }
  t.equal(await psql(f.conninfo(db), 'SELECT current_user'), db.role, 'the owner (SCRAM, another address) connects during the attack');
  t.equal(await attempt({ port: f.proxy.port, from: '127.0.0.7', user: db.role, password: `endpoint=${db.endpointId};${db.password}` }), 'ok',
    'the right password from any address that is not flooding gets in');
  t.match(await attempt({ port: f.proxy.port, from: attackers[0]!, user: db.role, password: `endpoint=${db.endpointId};${db.password}` }),
    /from this address/, 'the flooding address stays refused, even with the right password');
});

t.test('junk tokens without an endpoint do not lock out anyone else\'s token logins', async (t) => {
  const db = await f.createDatabase();
  const junk = () => forge({ alg: 'RS256', kid: 'x' }, { iss: 'https://attacker.example', aud: 'x', sub: 'x', exp: nowSeconds() + 60 }, undefined);
  const floods = await Promise.all(attackers.map((from) => series(from, PER_ADDRESS + 2, 'anyone', junk)));
  t.ok(floods.flat().length > 100, 'more failures than the old shared "jwt" limit allowed');
  for (const answers of floods) t.match(answers.at(-1), /from this address/, 'each flooding address ends up refused');
  const issued = await f.core.jwt.tokens.issueFor(db.database);
  t.equal(await psql(`host=127.0.0.1 port=${f.proxy.port} user=${db.role} dbname=app sslmode=require password=${issued.token}`, 'SELECT current_user'),
    db.role, 'a gateway token (no endpoint named) connects during the attack');
});
