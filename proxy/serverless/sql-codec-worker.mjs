// The codec worker's entry: a worker thread takes no --import, so it loads its TypeScript as the
// gateway itself does.
import '../../bin/load-ts.mjs';

await import('./sql-codec-worker.ts');
