import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { build } from 'esbuild';

export type ConsolePart = 'html' | 'js' | 'css' | 'icon';

/** The console as the browser loads it: one HTML page, one script, one stylesheet, its icon, each also gzipped once. */
export type ConsoleBundle = Record<ConsolePart, { text: string; gzip: Buffer }>;

const APP_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), 'app');

/** Bundles and minifies the console's sources (Preact, uPlot and the app) in memory with esbuild. */
export async function buildConsole(): Promise<ConsoleBundle> {
  const result = await build({
    entryPoints: [path.join(APP_DIR, 'main.tsx')],
    tsconfig: path.join(APP_DIR, 'tsconfig.json'),
    bundle: true,
    write: false,
    minify: true,
    format: 'esm',
    target: 'es2022',
    outdir: 'out',
    jsx: 'automatic',
    jsxImportSource: 'preact',
    legalComments: 'none',
    logLevel: 'silent',
  });
  const output = (ext: string) => {
    const file = result.outputFiles.find((f) => f.path.endsWith(ext));
    if (!file) throw new Error(`the console build made no ${ext} file`);
    return file.text;
  };
  const part = (text: string) => ({ text, gzip: gzipSync(text, { level: 9 }) });
  const file = (name: string) => readFile(path.join(APP_DIR, name), 'utf8');
  return { html: part(await file('index.html')), js: part(output('.js')), css: part(output('.css')), icon: part(await file('favicon.svg')) };
}

let built: Promise<ConsoleBundle> | undefined;

/** Built once per process, on first use, so that gateways which never serve the console never build it. */
export function consoleBundle(): Promise<ConsoleBundle> {
  built ??= buildConsole();
  built.catch(() => {
    built = undefined;
  });
  return built;
}
