/**
 * Adversarial review 7 of the register hook's first/second-sight policy:
 * differences from native found by the review, each compared against the
 * same script run natively in a child process.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../', import.meta.url));
const linux = process.platform === 'linux';

/** Runs `script` (an ES module) natively and under `--import wasm-cow/register` (lazy); returns both outputs, parsed. */
function both(script: string): { native: unknown; hooked: unknown } {
  const run = (pre: string[]): unknown =>
    JSON.parse(
      execFileSync(process.execPath, [...pre, '--input-type=module', '-e', script], {
        cwd: root,
        encoding: 'utf8',
        timeout: 60_000,
        env: { ...process.env, WASM_COW_REGISTER: 'lazy' },
      }),
    );
  return { native: run([]), hooked: run(['--import', 'wasm-cow/register']) };
}

const MODULE = `
  const DATA = () => new Uint8Array([0,97,115,109,1,0,0,0, 5,3,1,0,1, 7,7,1,3,109,101,109,2,0, 11,7,1,0,65,0,11,1,42]);
  const settle = (p, ms = 2000) => Promise.race([p.then(() => 'ok', (e) => e.constructor.name + ': ' + e.message), new Promise((r) => setTimeout(() => r('pending after ' + ms + ' ms'), ms).unref())]);
`;

test('instantiateStreaming of a Response V8 rejects on its headers settles as natively, even when its body never ends', { skip: !linux && 'native backend only' }, () => {
  const script = `${MODULE}
    const { createServer } = await import('node:http');
    // Headers sent, the body never finished.
    const server = createServer((req, res) => {
      const [type, status] = req.url === '/type' ? ['text/plain', 200] : ['application/wasm', 404];
      res.writeHead(status, { 'content-type': type });
      res.write(DATA().subarray(0, 8));
    });
    await new Promise((r) => server.listen(0, '127.0.0.1', r));
    const base = 'http://127.0.0.1:' + server.address().port;
    const out = {};
    for (const path of ['/type', '/status']) {
      // The first sight of a URL is V8's alone; the second and third are read beside V8.
      for (let i = 0; i < 3; i++) out[path + i] = await settle(WebAssembly.instantiateStreaming(fetch(base + path)));
    }
    // A Response the program made (no URL: read at every sight).
    for (let i = 0; i < 2; i++) {
      const body = new ReadableStream({ start(c) { c.enqueue(DATA().subarray(0, 8)); } });
      out['made' + i] = await settle(WebAssembly.instantiateStreaming(new Response(body, { headers: { 'content-type': 'text/html' } })));
      out['madeCompile' + i] = await settle(WebAssembly.compileStreaming(new Response(body.locked ? new ReadableStream({ start(c) { c.enqueue(DATA().subarray(0, 8)); } }) : body, { headers: { 'content-type': 'text/html' } })));
    }
    server.closeAllConnections();
    server.close();
    console.log(JSON.stringify(out));
    process.exit(0);`;
  const { native, hooked } = both(script);
  assert.match(JSON.stringify(native), /unsupported MIME type 'text\/plain'.*status code 404/);
  assert.deepEqual(hooked, native);
});

test('streaming: the hook calls no getter or method a Response subclass defines (url, bodyUsed, clone, headers, ok) beyond what Node does', { skip: !linux && 'native backend only' }, () => {
  const script = `${MODULE}
    const calls = {};
    const count = (k) => { calls[k] = (calls[k] ?? 0) + 1; };
    class Counted extends Response {
      get url() { count('url'); return 'https://example.invalid/m.wasm'; }
      get bodyUsed() { count('bodyUsed'); return super.bodyUsed; }
      get headers() { count('headers'); return super.headers; }
      get ok() { count('ok'); return super.ok; }
      clone() { count('clone'); return super.clone(); }
    }
    const out = {};
    for (let i = 0; i < 3; i++) {
      const r = await WebAssembly.instantiateStreaming(new Counted(DATA(), { headers: { 'content-type': 'application/wasm' } }));
      out['instantiate' + i] = new Uint8Array(r.instance.exports.mem.buffer)[0];
      const m = await WebAssembly.compileStreaming(new Counted(DATA(), { headers: { 'content-type': 'application/wasm' } }));
      out['compile' + i] = WebAssembly.Module.exports(m).length;
    }
    out.calls = calls;
    console.log(JSON.stringify(out));`;
  const { native, hooked } = both(script);
  // Node reads url twice (if (response.url) setURL(response.url)).
  assert.deepEqual((native as { calls: unknown }).calls, { headers: 6, ok: 6, bodyUsed: 6, url: 12 });
  assert.deepEqual(hooked, native);
});

test('under fake timers (globalThis.setImmediate and process.hrtime replaced, as jest and @sinonjs/fake-timers do), compile and instantiate settle as natively', { skip: !linux && 'native backend only' }, () => {
  const script = `
    const CODE = () => new Uint8Array([0,97,115,109,1,0,0,0, 1,4,1,0x60,0,0, 3,2,1,0, 5,3,1,0,1, 7,7,1,3,109,101,109,2,0,
      10,0x95,3,1,0x92,3,0, ...new Array(400).fill(1), 0x0b, 11,7,1,0,65,0,11,1,42]);
    const DATA = () => new Uint8Array([0,97,115,109,1,0,0,0, 5,3,1,0,1, 7,7,1,3,109,101,109,2,0, 11,7,1,0,65,0,11,1,42]);
    const realSetTimeout = setTimeout;
    // Fake timers: an immediate runs only when the test advances the clock (never, here); time stands still.
    globalThis.setImmediate = () => ({ ref() { return this; }, unref() { return this; }, hasRef: () => true });
    const frozen = () => [1000, 0];
    frozen.bigint = () => 1000000000000n;
    process.hrtime = frozen;
    const settle = (p) => Promise.race([p.then((r) => 'ok ' + (r instanceof WebAssembly.Module ? 'Module' : typeof r), (e) => String(e)), new Promise((r) => realSetTimeout(r, 1000, 'pending after 1 s'))]);
    const out = {};
    for (const [name, make] of [['code', CODE], ['data', DATA]]) {
      for (let i = 0; i < 3; i++) out[name + 'Compile' + i] = await settle(WebAssembly.compile(make()));
      for (let i = 0; i < 3; i++) out[name + 'Instantiate' + i] = await settle(WebAssembly.instantiate(make()));
      for (let i = 0; i < 3; i++) out[name + 'Module' + i] = await settle(WebAssembly.instantiate(new WebAssembly.Module(make())));
    }
    const reg = globalThis[Symbol.for('wasm-cow.register')];
    if (reg?.madeHook) out.settled = await settle(reg.madeHook.settled().then(() => reg.madeHook.stats().pending));
    console.log(JSON.stringify(out));
    process.exit(0);`;
  const { native, hooked } = both(script);
  const { settled, ...program } = hooked as Record<string, unknown>;
  assert.ok(!JSON.stringify(native).includes('pending'));
  assert.deepEqual(program, native);
  assert.equal(settled, 'ok number', "the hook's own background work runs on its own immediates");
});

test("the drop-in instantiate() under fake timers (globalThis.setImmediate replaced) settles as V8's does", () => {
  const script = `
    const { instantiate } = await import('wasm-cow');
    const CODE = () => new Uint8Array([0,97,115,109,1,0,0,0, 1,4,1,0x60,0,0, 3,2,1,0, 5,3,1,0,1, 7,7,1,3,109,101,109,2,0,
      10,0x95,3,1,0x92,3,0, ...new Array(400).fill(1), 0x0b, 11,7,1,0,65,0,11,1,42]);
    const DATA = () => new Uint8Array([0,97,115,109,1,0,0,0, 5,3,1,0,1, 7,7,1,3,109,101,109,2,0, 11,7,1,0,65,0,11,1,42]);
    const realSetTimeout = setTimeout;
    globalThis.setImmediate = () => ({ ref() { return this; }, unref() { return this; }, hasRef: () => true });
    const settle = (p) => Promise.race([p.then((r) => new Uint8Array(r.instance.exports.mem.buffer)[0], (e) => String(e)), new Promise((r) => realSetTimeout(r, 1000, 'pending after 1 s'))]);
    const out = {};
    for (const [name, make] of [['code', CODE], ['data', DATA]]) {
      for (let i = 0; i < 4; i++) out[name + i] = await settle(instantiate(make()));
    }
    console.log(JSON.stringify(out));
    process.exit(0);`;
  const out = JSON.parse(execFileSync(process.execPath, ['--input-type=module', '-e', script], { cwd: root, encoding: 'utf8', timeout: 60_000 })) as Record<string, unknown>;
  assert.deepEqual(out, { code0: 42, code1: 42, code2: 42, code3: 42, data0: 42, data1: 42, data2: 42, data3: 42 });
});

test("streaming: a thenable given for the Response has its then() called once, as natively, whether it resolves or rejects", { skip: !linux && 'native backend only' }, () => {
  const script = `${MODULE}
    const out = {};
    for (const api of ['compileStreaming', 'instantiateStreaming']) {
      for (const outcome of ['reject', 'resolve']) {
        let calls = 0;
        const err = new RangeError('no response');
        const thenable = { then(res, rej) { calls++; if (outcome === 'reject') rej(err); else res(new Response(DATA(), { headers: { 'content-type': 'application/wasm' } })); } };
        let r;
        try { await WebAssembly[api](thenable); r = 'ok'; } catch (e) { r = e === err ? 'the same error' : String(e); }
        out[api + ' ' + outcome] = r + ', then() called ' + calls + 'x';
      }
    }
    console.log(JSON.stringify(out));`;
  const { native, hooked } = both(script);
  assert.equal((native as Record<string, string>)['instantiateStreaming reject'], 'the same error, then() called 1x');
  assert.deepEqual(hooked, native);
});
