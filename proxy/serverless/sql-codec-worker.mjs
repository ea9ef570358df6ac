// The codec worker's entry: a worker thread takes no --import, so it loads its TypeScript through
// tsx's API, as the gateway itself runs.
import { register } from 'tsx/esm/api';

register();
await import('./sql-codec-worker.ts');
