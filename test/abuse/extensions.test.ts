// The extension allowlist (issue 16, item 9): a tenant creates only the extensions the
// configuration lists, in its database and in any database it creates, and cannot remove the guard.
import t from 'tap';
import { psql, psqlError, startProxyFixture } from '../proxy-helpers.ts';

const f = await startProxyFixture({ PGFLEET_EXTENSIONS: 'pgcrypto, citext' });
t.teardown(() => f.stop());

t.test('only listed extensions can be created', async (t) => {
  const db = await f.createDatabase();
  const conn = f.conninfo(db);
  await psql(conn, 'CREATE EXTENSION pgcrypto');
  t.equal(await psql(conn, `SELECT length(encode(digest('x', 'sha256'), 'hex'))`), '64', 'a listed extension works');
  const refused = await psqlError(conn, 'CREATE EXTENSION hstore');
  t.match(refused, /extension hstore is not allowed on this server/);
  t.match(refused, /Allowed extensions: pgcrypto, citext/);
  t.equal(await psql(conn, `SELECT count(*) FROM pg_extension WHERE extname = 'hstore'`), '0', 'the refused extension was rolled back');
  t.match(await psqlError(conn, 'DROP EVENT TRIGGER pgfleet_extension_allowlist'), /must be owner|permission denied|must be superuser/);
  t.match(await psqlError(conn, 'DROP SCHEMA pgfleet CASCADE'), /must be owner|permission denied/);
  t.match(await psqlError(conn, `CREATE OR REPLACE FUNCTION pgfleet.extension_allowlist() RETURNS event_trigger LANGUAGE plpgsql AS 'BEGIN END'`),
    /permission denied|must be owner/);

  await psql(conn, 'CREATE DATABASE other');
  const other = conn.replace(`dbname=${db.database.databaseName}`, 'dbname=other');
  t.match(await psqlError(other, 'CREATE EXTENSION hstore'), /not allowed/, 'a database the tenant creates has the guard too');
  await psql(other, 'CREATE EXTENSION citext');
  t.equal(await psql(other, `SELECT 'A'::citext = 'a'::citext`), 't', 'and allows what is listed');
});
