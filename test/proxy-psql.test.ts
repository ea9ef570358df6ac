import t from 'tap';
import { psql, psqlError, startProxyFixture } from './proxy-helpers.ts';

const f = await startProxyFixture();
t.teardown(() => f.stop());
const a = await f.createDatabase();

t.test('psql sslmode=require through the SNI URI (hostaddr) and the no-SNI URI', async (t) => {
  t.equal(await psql(f.conninfo(a), 'SELECT current_user || \'@\' || current_database()'), `${a.role}@app`);
  t.equal(await psql(a.uriNoSni, 'SELECT 42'), '42');
});
