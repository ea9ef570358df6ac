/** The test run's `before` script: makes the seed fresh gateways start from (test/seed-cache.ts). */
import { makeSeed } from './seed-cache.ts';

const started = Date.now();
const seed = await makeSeed();
console.log(`# test seed ${seed} (${Date.now() - started} ms)`);
