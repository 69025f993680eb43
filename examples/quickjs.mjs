// QuickJS (quickjs-emscripten) through wasm-cow: a fresh JS sandbox per
// evaluation. quickjs imports its memory; wasm-cow maps the data image into
// that memory instead of letting V8 copy it.
//   node examples/quickjs.mjs
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { newQuickJSWASMModuleFromVariant, newVariant } from 'quickjs-emscripten-core';
import releaseSync from '@jitl/quickjs-wasmfile-release-sync';
import { Engine, emscriptenAdapter } from 'wasm-cow';

const require = createRequire(import.meta.url);
const wasm = readFileSync(require.resolve('@jitl/quickjs-wasmfile-release-sync/wasm'));
const engine = new Engine();
const prepared = engine.prepare(wasm);

for (const code of ['1 + 2', '[1, 2, 3].map((x) => x * x).join()', 'typeof globalThis.process']) {
  const adapter = emscriptenAdapter(prepared);
  const variant = newVariant(releaseSync, { emscriptenModule: { instantiateWasm: adapter.instantiateWasm } });
  const quickjs = await newQuickJSWASMModuleFromVariant(variant);
  const vm = quickjs.newContext();
  const result = vm.unwrapResult(vm.evalCode(code));
  console.log(`${code} => ${JSON.stringify(vm.dump(result))}`);
  result.dispose();
  vm.dispose();
  adapter.release();
}
console.log('memory:', JSON.stringify(prepared.memories[0]));
engine.close();
