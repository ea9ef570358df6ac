/**
 * The events pgfleet records, `resource.verb`. A partner sees (and its webhooks hear) the events
 * of its own databases; operator events (node.*) have no partner and reach only the operator.
 */
export const EVENT_TYPES = {
  'database.created': 'a database was created',
  'database.ready': 'a database can be served (its provider resource exists)',
  'database.failed': 'a database cannot be served any more (its provider resource is gone)',
  'database.updated': 'settings of a database changed (name, suspend timeout, retention, quotas, pool size, compute size)',
  'database.suspended': 'a compute stopped (idle, an API call, a quota, room for another compute)',
  'database.woken': 'a compute started (a connection, an API call)',
  'database.wake_failed': 'a compute could not be started',
  'database.deleted': 'a database was deleted',
  'branch.created': 'a branch was created',
  'branch.deleted': 'a branch was deleted',
  'branch.reset': 'a branch became a fresh copy of its parent',
  'branch.expired': 'an ephemeral branch reached its expires_at and was deleted',
  'restore.started': 'a point-in-time restore of a branch began',
  'restore.finished': 'a point-in-time restore ended (ok, or failed with its error)',
  'quota.warning': 'a quota of a database is 80% used this month',
  'quota.exceeded': 'a quota of a database is used up',
  'role.created': 'a role was added to a database',
  'role.password_reset': 'a role got a new password',
  'usage.recorded': 'usage of a database in one hour (sent once the hour has settled; a later correction is one more record)',
  'migration.finished': 'a fleet-wide migration reached every database it selected (data: counts per outcome)',
  'migration.failed': 'a fleet-wide migration stopped after max_failures databases failed',
  'migration.paused': 'a fleet-wide migration was paused',
  'migration.cancelled': 'a fleet-wide migration was cancelled; the databases it had not reached are skipped',
  'template.created': 'a partner template was made from a database',
  'template.deleted': 'a partner template was deleted',
  'node.drained': 'a node gave its databases to other nodes (operator)',
  'node.lost': 'a node went silent and its databases went elsewhere (operator)',
} as const;

export type EventType = keyof typeof EVENT_TYPES;

/** What a webhook may subscribe to: a type, `resource.*`, or `*`. */
export const EVENT_PATTERNS: readonly string[] = [
  '*',
  ...new Set(Object.keys(EVENT_TYPES).map((t) => `${t.split('.')[0]}.*`)),
  ...Object.keys(EVENT_TYPES),
];


/** SQL: whether event type `type` matches one of the patterns in text[] `patterns`. */
export const SQL_MATCHES = (type: string, patterns: string) =>
  `EXISTS (SELECT 1 FROM unnest(${patterns}) AS p WHERE p = '*' OR p = ${type} OR (right(p, 2) = '.*' AND starts_with(${type}, left(p, -1))))`;
