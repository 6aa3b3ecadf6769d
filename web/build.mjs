// Bundles the room template and the test publisher into ../templates/{room,publisher}/ as plain
// static files (relative asset paths), the folder roomcast serves at /templates/.
import { build } from 'esbuild';
import { copyFile, mkdir, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, '..', 'templates');

const pages = [
  { name: 'room', entry: 'src/room/main.ts', bundle: 'room.js', copy: ['src/room/index.html', 'src/room/room.css'] },
  { name: 'publisher', entry: 'src/publisher/publisher.ts', bundle: 'publisher.js', copy: ['src/publisher/index.html'] },
];

for (const page of pages) {
  const dir = join(out, page.name);
  // Only these two folders are generated; the rest of templates/ is hand-written and stays.
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  await build({
    entryPoints: [join(here, page.entry)],
    outfile: join(dir, page.bundle),
    bundle: true,
    format: 'iife',
    platform: 'browser',
    target: ['chrome110'],
    minify: true,
    sourcemap: 'linked',
    legalComments: 'eof',
    logLevel: 'warning',
  });
  for (const file of page.copy) await copyFile(join(here, file), join(dir, file.split('/').pop()));
  console.log(`built ${join('templates', page.name)}/`);
}
