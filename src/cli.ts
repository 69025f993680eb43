#!/usr/bin/env node
/**
 * The wasm-cow command line.
 *
 *   wasm-cow inspect <file.wasm> [--json]
 *   wasm-cow bench <file.wasm> [--json] [--n N]
 *   wasm-cow demo [--json]
 *
 * Exit codes: 0 success; 1 unexpected error; 2 usage error (bad command or
 * option, unreadable file); 3 the module is invalid, or cannot be
 * instantiated with stub imports (bench).
 */
import { readFileSync } from 'node:fs';
import { parseModule } from './binary/reader.js';
import { buildModule, pseudoRandomBytes, stdFuncs } from './bench/builder.js';
import { compareInstantiation, stubImportsFactory, touchExportedMemory, type CompareResult } from './bench/compare.js';
import { fmtBytes, fmtRatio, fmtUs, fmtVersus, type Timing } from './bench/measure.js';
import { Engine } from './engine.js';

const EXIT = { ok: 0, error: 1, usage: 2, module: 3 } as const;

class UsageError extends Error {}
class ModuleError extends Error {}

const HELP: Record<string, string> = {
  main: `wasm-cow: copy-on-write heap images for WebAssembly in Node.js

Usage:
  wasm-cow demo [--json]                     Compare native and wasm-cow instantiation on
                                             generated example modules (try this first)
  wasm-cow inspect <file.wasm> [--json]      Show memories, segments, images and exclusions
  wasm-cow bench <file.wasm> [--json] [--n N]
                                             Time native against wasm-cow for one module
  wasm-cow <command> --help                  Help for a command

Exit codes: 0 success, 1 unexpected error, 2 usage error, 3 invalid or
uninstantiable module.`,
  inspect: `wasm-cow inspect <file.wasm> [--json]

Analyses a module as Engine.prepare() does and prints, for each memory: its
limits, its active data segments, the image (offset and length in linear
memory, bytes trimmed as leading/trailing zero pages) or the reason it has
none; and the size of the rewritten module.`,
  bench: `wasm-cow bench <file.wasm> [--json] [--n N]

Instantiates the module natively and through wasm-cow (fresh memory, pooled
memory, and V8's floor), side by side in this process, in alternating blocks,
with stub imports made from the module's import types: functions return 0;
globals are WebAssembly.Global objects of the declared type and mutability
holding zero; tables and memories have the declared limits (each
instantiation gets new imported memories, as Emscripten glue makes one per
instance); tags are WebAssembly.Tag objects of the declared parameters.
N caps the iterations per variant (default 2000; each variant also stops
after about 1 s, or, while others of similar cost have not, at most after
2 s). A module whose start function needs real imports cannot be
benchmarked this way: wasm-cow says so and exits with 3.`,
  demo: `wasm-cow demo [--json]

Generates example modules with 0 B, 1 MiB, 16 MiB and 64 MiB of data and
prints native against wasm-cow instantiation side by side. Takes under a
minute.`,
};

function main(argv: string[]): number {
  const [command, ...rest] = argv;
  if (!command || command === '--help' || command === '-h' || command === 'help') {
    process.stdout.write(`${HELP['main']}\n`);
    return command ? EXIT.ok : EXIT.usage;
  }
  if (!(command in HELP) || command === 'main') throw new UsageError(`unknown command '${command}'; see wasm-cow --help`);
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(`${HELP[command]}\n`);
    return EXIT.ok;
  }
  const opts = parseOptions(rest, command === 'bench' ? ['--n'] : []);
  switch (command) {
    case 'inspect':
      return inspect(readModule(opts.positional), opts.flags.has('--json'));
    case 'bench':
      return bench(readModule(opts.positional), opts.flags.has('--json'), opts.values.get('--n'));
    default:
      return demo(opts.flags.has('--json'));
  }
}

function parseOptions(args: string[], valued: string[]) {
  const flags = new Set<string>();
  const values = new Map<string, string>();
  const positional: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (valued.includes(a)) {
      const v = args[++i];
      if (v === undefined) throw new UsageError(`${a} needs a value`);
      values.set(a, v);
    } else if (a === '--json') flags.add(a);
    else if (a.startsWith('-')) throw new UsageError(`unknown option '${a}'`);
    else positional.push(a);
  }
  return { flags, values, positional };
}

function readModule(positional: string[]): { path: string; bytes: Uint8Array<ArrayBuffer> } {
  if (positional.length !== 1) throw new UsageError('expected exactly one <file.wasm>');
  const path = positional[0]!;
  try {
    return { path, bytes: new Uint8Array(readFileSync(path)) };
  } catch (e) {
    throw new UsageError(`cannot read ${path}: ${(e as Error).message}`);
  }
}

function prepareOrFail(engine: Engine, bytes: Uint8Array<ArrayBuffer>) {
  try {
    return engine.prepare(bytes);
  } catch (e) {
    throw new ModuleError(`not a valid WebAssembly module: ${(e as Error).message}`);
  }
}

function inspect({ path, bytes }: { path: string; bytes: Uint8Array<ArrayBuffer> }, json: boolean): number {
  const engine = new Engine();
  const prepared = prepareOrFail(engine, bytes);
  const parsed = prepared.unparsedReason === null ? parseModule(bytes) : null;
  const memories = prepared.memories.map((m) => {
    const segments = parsed?.data.filter((d) => d.mode === 'active' && d.memory === m.index) ?? [];
    const dataBytes = segments.reduce((n, d) => n + d.dataEnd - d.dataStart, 0);
    const consts = segments.filter((d) => d.offset && !d.offset.dynamic && d.offset.global === null && d.offset.type === 'i32');
    // Where constant segments put data (page-aligned), for trimming and for conditional images.
    const page = 4096;
    const nonEmpty = consts.filter((d) => d.dataEnd > d.dataStart);
    const lo = nonEmpty.length ? Math.min(...nonEmpty.map((d) => Number(d.offset!.constant))) : Infinity;
    const hi = nonEmpty.length ? Math.max(...nonEmpty.map((d) => Number(d.offset!.constant) + d.dataEnd - d.dataStart)) : 0;
    const range = Number.isFinite(lo) ? { offset: Math.floor(lo / page) * page, end: Math.ceil(hi / page) * page } : null;
    const span = m.image && consts.length && range ? range.end - range.offset : 0;
    const constantSegments = consts.length === segments.length;
    return {
      ...m,
      activeSegments: segments.length,
      passiveSegments: parsed?.data.filter((d) => d.mode === 'passive').length ?? 0,
      activeDataBytes: dataBytes,
      bytesTrimmed: m.image ? Math.max(0, span - m.image.length) : 0,
      dataRange: constantSegments ? range : null,
    };
  });
  // Nothing to gain: no memory of its own (which the pool would reuse) and
  // no image for any imported one. Each instantiation is then V8's own plus
  // the lease's bookkeeping, which the engine cannot win back (issue 9): say
  // so, and whether instance reuse (its own room) would take it.
  const imaged = memories.some((m) => m.excluded === null && (m.image !== null || m.condition !== null));
  const pooled = memories.some((m) => !m.imported);
  const reuse = prepared.unparsedReason === null ? engine.prepare(bytes, { reuse: true }).reuse : null;
  const gain =
    prepared.unparsedReason === null && !imaged && !pooled
      ? {
          none: true,
          why:
            memories.length === 0
              ? 'the module has no memory: nothing to pool or map'
              : 'its memories are imported and none gets an image: nothing to pool or map',
          reuse: reuse === null ? null : { enabled: reuse.enabled, reason: reuse.reason, detail: reuse.detail },
        }
      : { none: false, why: null, reuse: null };
  const report = {
    file: path,
    size: bytes.length,
    rewrittenSize: prepared.compiledSize,
    backend: engine.backend,
    unparsed: prepared.unparsedReason,
    imports: prepared.imports.length,
    exports: prepared.exports.length,
    memories,
    newMemory: prepared.newMemory,
    gain,
  };
  engine.close();
  if (json) {
    process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
    return EXIT.ok;
  }
  const lines = [
    `${path}: ${fmtBytes(bytes.length)}, ${report.imports} imports, ${report.exports} exports`,
    `rewritten module: ${fmtBytes(report.rewrittenSize)} (${fmtBytes(Math.max(0, bytes.length - report.rewrittenSize))} of data moved into images)`,
  ];
  if (report.unparsed) lines.push(`not analysed (${report.unparsed}); it runs as native`);
  if (memories.length === 0) lines.push('no memories');
  for (const m of memories) {
    lines.push(
      `memory ${m.index}${m.imported ? ' (imported)' : ''}: ${m.initialPages} pages initial, ` +
        `${m.maximumPages === null ? 'no maximum' : `${m.maximumPages} maximum`}; ` +
        `${m.activeSegments} active segments (${fmtBytes(m.activeDataBytes)})`,
    );
    if (m.condition === 'imported-untouched' && m.excluded === null) {
      const where = m.dataRange
        ? `bytes ${m.dataRange.offset} to ${m.dataRange.end} (${fmtBytes(m.dataRange.end - m.dataRange.offset)})`
        : 'the range its segments resolve to';
      lines.push(
        `  image: conditional (imported-untouched): at each instantiation, mapped into the caller's memory over ${where}, ` +
          'on the pages that hold only zeros then; the segments\' bytes are written on the others, as V8 writes them',
      );
    } else if (m.condition === 'position-independent' && m.excluded === null) {
      lines.push(
        '  image: conditional (position-independent): the segments are placed from imported globals; ' +
          'an image is built per value and mapped at each instantiation',
      );
    } else if (m.image) {
      lines.push(
        m.image.length === 0
          ? '  image: all zero (nothing to map)'
          : `  image: offset ${m.image.offset}, length ${m.image.length} (${fmtBytes(m.image.length)}), ${fmtBytes(m.bytesTrimmed)} of zero pages trimmed`,
      );
    } else if (m.excluded) {
      lines.push(`  no image: ${m.excluded.code}: ${m.excluded.message}`);
    }
  }
  const nm = report.newMemory;
  if (nm) {
    const estimate =
      `V8's copy of ${nm.dataPages} page${nm.dataPages === 1 ? '' : 's'} in ${nm.segments} segment${nm.segments === 1 ? '' : 's'}: ` +
      `about ${nm.savedUs.toFixed(1)} µs saved by an image, against ${nm.addedUs.toFixed(1)} µs added by making ` +
      `${nm.memoryPages} page${nm.memoryPages === 1 ? '' : 's'} of memory`;
    lines.push(
      nm.mode === 'image'
        ? `new memories: the image is mapped (${estimate})`
        : `new memories: runs as V8 would when no idle memory can be reused and the module's memories are not coming back ` +
            `to the pool (too little data for the memory's size: ${estimate}); pooled memories are still used. ` +
            'Such an instantiation is V8\'s own plus the lease (about 0.5 µs, a few µs right after a large instantiation): ' +
            'level with native or slightly slower, never faster',
    );
  }
  if (gain.none) {
    lines.push(
      `nothing to gain: ${gain.why}. Each instantiation through prepare() is V8's own plus the lease (about 0.5 µs ` +
        'on a small module, more right after a large instantiation, whose work leaves little of the engine in the CPU ' +
        "caches: 4-6 µs measured on QuickJS's 0.14 ms), so it is slower than native: instantiate it with " +
        '`new WebAssembly.Instance` directly' +
        (gain.reuse?.enabled ? ', or prepare it with { reuse: true } (eligible: a released instance is reset and reused)' : '') +
        (gain.reuse && !gain.reuse.enabled ? ` (instance reuse: not eligible, ${gain.reuse.reason}: ${gain.reuse.detail ?? ''})` : ''),
    );
  }
  process.stdout.write(`${lines.join('\n')}\n`);
  return EXIT.ok;
}

function bench({ path, bytes }: { path: string; bytes: Uint8Array<ArrayBuffer> }, json: boolean, n: string | undefined): number {
  const maxIterations = n === undefined ? 2000 : Number(n);
  if (!Number.isInteger(maxIterations) || maxIterations < 1) throw new UsageError(`--n must be a positive integer, not '${n}'`);
  const engine = new Engine();
  prepareOrFail(engine, bytes);
  engine.close();
  const imports = stubImportsFactory(bytes);
  try {
    new WebAssembly.Instance(new WebAssembly.Module(bytes), imports());
  } catch (e) {
    throw new ModuleError(
      `${path} cannot be instantiated with stub imports (${(e as Error).message}). ` +
        'It needs real imports: time PreparedModule.instantiate(imports) against new WebAssembly.Instance(module, imports) ' +
        'from code, with the imports it needs.',
    );
  }
  process.stderr.write(`benchmarking ${path} (native, fresh, pooled, floor, alternating; about 1 s each) ...\n`);
  const result = compareInstantiation(bytes, { imports, maxIterations, touch: touchExportedMemory });
  if (json) process.stdout.write(`${JSON.stringify({ file: path, ...result }, null, 2)}\n`);
  else process.stdout.write(`${table([[path, result]])}\n`);
  return EXIT.ok;
}

function demo(json: boolean): number {
  const MiB = 1024 * 1024;
  const results: [string, CompareResult][] = [];
  for (const size of [0, MiB, 16 * MiB, 64 * MiB]) {
    const name = size === 0 ? 'no data' : `${size / MiB} MiB of data`;
    process.stderr.write(`demo: ${name} ...\n`);
    const data = pseudoRandomBytes(size, 11).map((b) => b || 1);
    const bytes = buildModule({
      memories: [{ min: Math.ceil(size / 65536) + 2, export: 'mem' }],
      funcs: stdFuncs,
      data: size ? [{ offset: 65536, bytes: data }] : [],
    });
    const touch = (e: WebAssembly.Exports) => (e['store8'] as (a: number, v: number) => void)(65536 + 100, 1);
    results.push([name, compareInstantiation(bytes, { touch, budgetMs: 800 })]);
  }
  if (json) {
    process.stdout.write(`${JSON.stringify(Object.fromEntries(results), null, 2)}\n`);
    return EXIT.ok;
  }
  process.stdout.write(
    `${table(results)}\n\nEach instantiation writes one byte into the module's data. "pooled" is the steady state of\n` +
      'instantiate + write + release; "floor" is V8 instantiating the rewritten module into a ready memory.\n',
  );
  return EXIT.ok;
}

function table(rows: [string, CompareResult][]): string {
  const cell = (t: Timing | undefined) => (t ? `${fmtUs(t.median)} (p99 ${fmtUs(t.p99)})` : 'n/a');
  const backend = rows[0]?.[1].backend ?? 'unknown';
  const out = [
    `backend: ${backend}; median per instance (p99)`,
    '',
    '| module | native | wasm-cow fresh | wasm-cow pooled | floor | pooled vs native |',
    '|---|---|---|---|---|---|',
  ];
  for (const [name, r] of rows) {
    const t = r.timings;
    out.push(
      `| ${name} | ${cell(t.native)} | ${cell(t.fresh)} | ${cell(t.pooled)} | ${cell(t.floor)} | ${fmtVersus(r.speedup)} |`,
    );
  }
  // Nothing rewritten: every column is V8's own work with the original
  // module (plus the lease), and native and floor are the same work. Their
  // difference is what this module's medians move by here (where each
  // instantiation makes a large memory, with where V8's collections fall).
  for (const [name, r] of rows) {
    const native = r.timings.native;
    const floor = r.timings.floor;
    if (r.rewritten || !native || !floor || !(Math.min(native.median, floor.median) > 0)) continue;
    const spread = Math.abs(native.median - floor.median) / Math.min(native.median, floor.median);
    out.push(
      `${rows.length > 1 ? `${name}: ` : ''}nothing of this module is imaged: wasm-cow runs it as V8 would (\`wasm-cow inspect\` says why), ` +
        `adding its lease (about 0.5 µs on a small module, several right after a large instantiation). ` +
        `"native" and "floor" are the same work, measured ` +
        `${fmtUs(native.median)} and ${fmtUs(floor.median)} here: a difference of about ${Math.max(1, Math.round(spread * 100))}% ` +
        'between identical work was this run\'s noise for this module',
    );
  }
  // Where the policy ran instances as V8 would, say so (see PreparedModule.newMemory).
  for (const [name, r] of rows) {
    for (const variant of ['fresh', 'pooled'] as const) {
      const s = r.stats[variant];
      const native = s.nativeInstantiations['small-data'];
      if (native > 0) {
        out.push(
          `${rows.length > 1 ? `${name}: ` : ''}wasm-cow ${variant}: ${native} of ${s.instantiations} instantiations ran as V8 would ` +
            '(too little data for an image in a new memory to beat V8, and the memories were not reused)',
        );
      }
    }
  }
  return out.join('\n');
}

try {
  process.exitCode = main(process.argv.slice(2));
} catch (e) {
  if (e instanceof UsageError) {
    process.stderr.write(`wasm-cow: ${e.message}\n`);
    process.exitCode = EXIT.usage;
  } else if (e instanceof ModuleError) {
    process.stderr.write(`wasm-cow: ${e.message}\n`);
    process.exitCode = EXIT.module;
  } else {
    process.stderr.write(`wasm-cow: unexpected error: ${(e as Error).stack ?? String(e)}\n`);
    process.exitCode = EXIT.error;
  }
}
