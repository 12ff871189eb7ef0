// Builds app.js into a wasi:http component: `node build.mjs OUT_DIR` writes
// OUT_DIR/javascript.wasm. Run it from this directory (run.py does).
import { componentize } from '@bytecodealliance/componentize-js';
import { copyFile, mkdir, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';

const out = resolve(process.argv[2] ?? '../../target/toolchains');

// componentize-js needs a WIT directory with the world and its dependencies;
// wasi:http 0.2.3 comes from an npm package, so assemble one under OUT_DIR.
const wit = join(out, 'javascript-wit');
await rm(wit, { recursive: true, force: true });
await mkdir(join(wit, 'deps'), { recursive: true });
await copyFile('wit/world.wit', join(wit, 'world.wit'));
await copyFile(
  'node_modules/@spinframework/wasi-http-proxy/wit/wasi-http@0.2.3.wit',
  join(wit, 'deps/wasi-http@0.2.3.wit'),
);

const { component } = await componentize({
  sourcePath: resolve('app.js'),
  witPath: wit,
  worldName: 'hello',
});
await writeFile(join(out, 'javascript.wasm'), component);
console.log(`wrote ${join(out, 'javascript.wasm')} (${component.byteLength} bytes)`);
