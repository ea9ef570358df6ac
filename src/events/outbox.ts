import { AuditLog } from '../audit.ts';
import { BranchExpiry } from '../branch-expiry.ts';
import type { Catalog } from '../catalog/catalog.ts';
import type { Config } from '../config.ts';
import type { Branches } from '../branches.ts';
import type { Logger } from '../log.ts';
import { reportUsage } from '../metering/usage-reports.ts';
import type { OperatorMetrics } from '../metrics.ts';
import { Periodic } from '../periodic.ts';
import { SecretBox, ensureSecretKey } from '../secret-box.ts';
import { Dispatcher } from '../webhooks/dispatcher.ts';
import { Webhooks } from '../webhooks/webhooks.ts';
import type { Events } from './events.ts';

/** How often due ephemeral branches are looked for: they go within this of their expires_at. */
const EXPIRY_CHECK_MS = 5000;
/** How often settled hours are reported as usage records. */
const USAGE_REPORT_EVERY_MS = 300_000;
/** Events (and their finished deliveries) are kept this long. */
const EVENT_RETENTION_MS = 30 * 86_400_000;
const PURGE_EVERY_MS = 3_600_000;

export interface OutboxDeps {
  config: Config;
  catalog: Catalog;
  events: Events;
  branches: Branches;
  nodeId: string;
  metrics: OperatorMetrics;
  log: Logger;
}

/** What the events bring to a gateway: webhooks and their dispatcher, the audit log, branch expiry, usage records. */
export interface Outbox {
  webhooks: Webhooks;
  audit: AuditLog;
  expiry: BranchExpiry;
  stop(): Promise<void>;
}

export async function startOutbox(d: OutboxDeps): Promise<Outbox> {
  const { config, catalog, events, log } = d;
  const box = new SecretBox(ensureSecretKey(config.dataDir, config.secretKey));
  const allowInternal = config.events.webhookAllowInternal;
  const webhooks = new Webhooks(catalog, box, { allowHttp: allowInternal, allowInternal });
  const dispatcher = new Dispatcher({
    catalog, box, nodeId: d.nodeId, retryScheduleMs: config.events.webhookRetryScheduleMs, timeoutMs: config.events.webhookTimeoutMs,
    allowInternal, metrics: d.metrics, userAgent: 'pgfleet-webhooks/1', log: log.child({ part: 'webhooks' }),
  });
  await dispatcher.start();
  const audit = new AuditLog(catalog);
  const expiry = new BranchExpiry(catalog, d.branches, events, log.child({ part: 'expiry' }));
  const warn = (what: string) => (err: Error) => log.warn({ err: String(err) }, `${what} failed; the next pass tries again`);
  const expiring = new Periodic(() => expiry.run(), warn('branch expiry'));
  // An hour is reported once every gateway has flushed it (two flush intervals), and a minute more.
  const settleMs = 2 * config.usageFlushSeconds * 1000 + 60_000;
  const reports = new Periodic(() => reportUsage(catalog, events, { now: Date.now(), settleMs }), warn('usage records'));
  const purge = new Periodic(async () => {
    await audit.purge(config.events.auditRetentionSeconds);
    await events.purge(EVENT_RETENTION_MS);
  }, warn('audit and event purge'));
  expiring.start(EXPIRY_CHECK_MS);
  reports.start(USAGE_REPORT_EVERY_MS);
  purge.start(PURGE_EVERY_MS);
  reports.runNow();
  purge.runNow();
  return {
    webhooks, audit, expiry,
    async stop() {
      await Promise.all([expiring.stop(), reports.stop(), purge.stop()]);
      await dispatcher.stop();
    },
  };
}
