/**
 * Review 6 of the drop-in instantiate(): what V8 does with a source that is
 * no BufferSource, the drop-in does too, running none of the caller's code
 * on the way; first calls made at once on one content note it once.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import { CODE_SHARE, codeShare, DropInCache } from '../src/dropin.js';
import { dropInSettled, getDefaultEngine, instantiate } from '../src/index.js';
import { buildModule, stdFuncs } from './helpers/wasm.js';

const BYTES = buildModule({ memories: [{ min: 1, export: 'mem' }], funcs: stdFuncs, data: [{ offset: 16, bytes: [1, 2, 3] }] });

async function outcome(p: () => Promise<unknown>): Promise<string> {
  try {
    await p();
    return 'resolved';
  } catch (e) {
    return `${(e as Error).constructor.name}: ${(e as Error).message}`;
  }
}

test('drop-in instantiate(): a Proxy source (over bytes, or with a Proxy on its prototype chain) runs none of its traps and is rejected with V8’s TypeError', async () => {
  for (const make of [
    (trap: ProxyHandler<object>) => new Proxy(BYTES, trap),
    (trap: ProxyHandler<object>) => Object.setPrototypeOf({}, new Proxy(WebAssembly.Module.prototype, trap)) as object,
  ]) {
    let traps = 0;
    const handler: ProxyHandler<object> = {
      getPrototypeOf() {
        traps++;
        throw new Error('a trap ran');
      },
    };
    const native = await outcome(() => WebAssembly.instantiate(make(handler) as BufferSource));
    assert.equal(traps, 0, 'V8 runs no trap');
    const got = await outcome(() => instantiate(make(handler) as BufferSource));
    assert.equal(traps, 0, 'the drop-in runs no trap');
    assert.equal(got, native);
  }
  // A genuine Module still gives an Instance, as natively.
  const instance = await instantiate(new WebAssembly.Module(BYTES));
  assert.ok(instance instanceof WebAssembly.Instance);
});

test('DropInCache: first calls made at once on the same bytes note them once (one entry, one held Module), not once each', async () => {
  const cache = new DropInCache(getDefaultEngine, () => null);
  // Mostly code: a first call's entry holds V8's module of the bytes.
  const bytes = buildModule({
    memories: [{ min: 1, export: 'mem' }],
    funcs: [...stdFuncs, { export: 'spin', body: Array.from({ length: 20_000 }, () => [0x41, 0x00, 0x1a]).flat() }],
  });
  assert.ok(codeShare(bytes) >= CODE_SHARE);
  const results = await Promise.all(Array.from({ length: 8 }, () => cache.instantiate(bytes)));
  assert.equal(new Set(results.map((r) => r.module)).size, 8, 'each call its own module, as natively');
  assert.equal(cache.size, 1, 'one entry for one content');
  for (let i = 0; i < 3; i++) {
    await cache.instantiate(bytes);
    await cache.settled();
  }
  assert.equal(cache.size, 1, 'still one entry once kept');
  assert.equal(cache.counts.cachedCompiles, 1);
});

test('drop-in instantiate() installed as the global WebAssembly.instantiate (for glue that calls it) works on every call, as V8’s', async () => {
  const native = WebAssembly.instantiate;
  const data = buildModule({ memories: [{ min: 8, export: 'mem' }], funcs: stdFuncs, data: [{ offset: 64, bytes: new Uint8Array(300_000).fill(9) }] });
  const code = buildModule({
    memories: [{ min: 1, export: 'mem' }],
    funcs: [...stdFuncs, { export: 'spin', body: Array.from({ length: 20_000 }, () => [0x41, 0x00, 0x1a]).flat() }],
    data: [{ offset: 64, bytes: [9] }],
  });
  const replaced = instantiate as typeof WebAssembly.instantiate;
  WebAssembly.instantiate = replaced;
  try {
    for (const bytes of [data, code]) {
      for (let call = 0; call < 4; call++) {
        const r = await WebAssembly.instantiate(bytes);
        assert.equal(new Uint8Array((r.instance.exports['mem'] as WebAssembly.Memory).buffer)[64], 9, `call ${call}`);
        await new Promise((resolve) => setImmediate(resolve));
        await dropInSettled();
      }
      const instance = await WebAssembly.instantiate(new WebAssembly.Module(bytes));
      assert.ok(instance instanceof WebAssembly.Instance);
    }
  } finally {
    WebAssembly.instantiate = native;
  }
});
