// Loads pgfleet's TypeScript in this process (`node --import ./bin/load-ts.mjs file.ts`, or imported
// first by an entry point): the module hooks of bin/ts-hooks.mjs, and stack traces that name .ts lines.
import { register } from 'node:module';

process.setSourceMapsEnabled(true);
register('./ts-hooks.mjs', import.meta.url);
