/**
 * Node's module hooks for pgfleet's own TypeScript: each .ts file becomes JavaScript by esbuild's
 * transform, which removes the types and nothing else (imports keep their .ts names, which Node
 * resolves as files). tsx does the same with the same esbuild, but always with esbuild's keepNames:
 * every named function and arrow function is then wrapped in a call that redefines its `name`, and
 * each such closure carries a property dictionary of its own (about 260 bytes) and costs a
 * defineProperty each time it is made. A relayed session makes some twenty: 4.5 of the 21.6 kB an
 * idle session held (bench/proxy.ts's memory figure).
 *
 * What a transform gives is kept in node_modules/.cache/pgfleet-ts, named by a hash of everything
 * it depends on (esbuild's version, the options, the file's path and text): every process of a
 * gateway (the primary, its workers, the reaper) and of the test suite loads the same files. Where
 * that directory cannot be written, files are transformed each time.
 */
import crypto from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { transform, version } from 'esbuild';

// As tsconfig.json's ES2022 target compiles them: class fields are defined, imports used only as types dropped.
const tsconfigRaw = { compilerOptions: { useDefineForClassFields: true, verbatimModuleSyntax: false } };
const OPTIONS = { loader: 'ts', format: 'esm', target: 'node20', sourcemap: 'inline', tsconfigRaw };
const CACHE = fileURLToPath(new URL('../node_modules/.cache/pgfleet-ts/', import.meta.url));
const SALT = JSON.stringify([version, OPTIONS]);

export async function load(url, context, nextLoad) {
  if (!url.startsWith('file:') || !url.endsWith('.ts')) return nextLoad(url, context);
  const file = fileURLToPath(url);
  const text = await readFile(file, 'utf8');
  const cached = path.join(CACHE, `${crypto.createHash('sha256').update(SALT).update(file).update('\0').update(text).digest('hex')}.js`);
  const source = await readFile(cached, 'utf8').catch(async () => {
    const { code } = await transform(text, { ...OPTIONS, sourcefile: file });
    await keep(cached, code);
    return code;
  });
  return { format: 'module', source, shortCircuit: true };
}

/** Written whole or not at all (a temporary file renamed), so a process never reads half of one. */
async function keep(cached, code) {
  try {
    await mkdir(CACHE, { recursive: true });
    const partial = `${cached}.${process.pid}.${crypto.randomBytes(4).toString('hex')}`;
    await writeFile(partial, code);
    await rename(partial, cached);
  } catch {
    // Not writable (a read-only install): transformed again next time.
  }
}
