import path from 'node:path';

/** The repository's root (the tests' own helpers find it from here). */
export const repoRoot = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
