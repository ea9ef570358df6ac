/**
 * Node's module hooks for pgfleet's own TypeScript: each .ts file becomes JavaScript by esbuild's
 * transform, which removes the types and nothing else (imports keep their .ts names, which Node
 * resolves as files). tsx does the same with the same esbuild, but always with esbuild's keepNames:
 * every named function and arrow function is then wrapped in a call that redefines its `name`, and
 * each such closure carries a property dictionary of its own (about 260 bytes) and costs a
 * defineProperty each time it is made. A relayed session makes some twenty: 4.5 of the 21.6 kB an
 * idle session held (bench/proxy.ts's memory figure).
 */
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { transform } from 'esbuild';

// As tsconfig.json's ES2022 target compiles them: class fields are defined, imports used only as types dropped.
const tsconfigRaw = { compilerOptions: { useDefineForClassFields: true, verbatimModuleSyntax: false } };

export async function load(url, context, nextLoad) {
  if (!url.startsWith('file:') || !url.endsWith('.ts')) return nextLoad(url, context);
  const file = fileURLToPath(url);
  const { code } = await transform(await readFile(file, 'utf8'), {
    loader: 'ts', format: 'esm', target: 'node20', sourcemap: 'inline', sourcefile: file, tsconfigRaw,
  });
  return { format: 'module', source: code, shortCircuit: true };
}
