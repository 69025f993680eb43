/**
 * Instance reuse (issue 12 part 4), side by side in one run (interleaved
 * blocks), per module. One cycle is:
 *
 *   reuse   engine.prepare(bytes, { reuse: true }): instantiate, one call
 *           through lease.exports, release (the instance is reset and kept)
 *   pooled  engine.prepare(bytes): the same (the memory is pooled, the
 *           instance made by V8 each time)
 *   native  new WebAssembly.Instance of the original module and the call
 *   floor   new WebAssembly.Instance of the module the pooled engine
 *           instantiates (the rewrite: memories imported, data segments
 *           empty) into a ready memory, and the call: the least any
 *           instantiation of that module can cost (as in the main table)
 *
 * Modules: synthetic ones of 0 B to 256 MiB of data (the call: store8 into
 * the data); sql.js, vscode-oniguruma, resvg, lightningcss and pyodide's
 * pyodide.asm.wasm (raw modules, stub imports as in the main table; the
 * call: an allocation where it does not grow the memory). Ineligible
 * modules are listed with `prepared.reuse.reason`. For pyodide also V8's
 * export-creation cost: the floor's instantiation against the same module
 * with an empty export section. Then the cost of a function-import
 * trampoline per call, and of restoring a table code mutated.
 *
 *   npx tsc -p tsconfig.json && node out/benchmarks/reuse.js [--quick]
 *
 * Prints a markdown table (medians and p99) and writes
 * benchmarks/results/reuse.json. `npm run bench` runs it too (reuseBench)
 * and puts the table into results.md.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Engine, type PreparedModule, type ReuseReason } from '../src/index.js';
import { fmtRatio, fmtUs, measureInterleaved, type Timing } from '../src/bench/measure.js';
import { buildModule, I32, sleb, uleb } from '../src/bench/builder.js';
import { readyMemoryImports, stubImportsFactory } from '../src/bench/compare.js';
import { parseModule } from '../src/binary/reader.js';
import { buildRaw } from '../test/helpers/raw-wasm.js';
import { label, realModules, synthetic } from './scenarios.js';

const MiB = 1024 * 1024;

type Fn = (...a: number[]) => number;
type Exports = Record<string, Fn>;

/** What a cycle calls once, through the instance's exports. */
interface Call {
  /** Said in the table. */
  readonly label: string;
  readonly run: (e: Exports) => void;
}

interface Subject {
  readonly name: string;
  /** An engine with the module prepared with { reuse: true } (eligible), made when the module was probed. */
  readonly reusable?: { readonly engine: Engine; readonly prepared: PreparedModule };
  readonly dataBytes: number;
  readonly bytes: Uint8Array<ArrayBuffer>;
  readonly imports: () => WebAssembly.Imports;
  readonly call: Call;
  /** Times the budget per variant (pyodide: its native and floor instantiations take tens of ms each). */
  readonly budgetScale?: number;
}

export interface ReuseRow {
  readonly name: string;
  readonly dataBytes: number;
  readonly exports: number;
  readonly call: string;
  readonly reuse: Timing;
  readonly pooled: Timing;
  readonly native: Timing;
  readonly floor: Timing;
  /** The reuse engine's instantiations (warm-up included) and how many a reused instance served. */
  readonly instantiations: number;
  readonly reused: number;
  readonly declined: Partial<Record<ReuseReason, number>>;
}

export interface ExportCost {
  readonly name: string;
  readonly exports: number;
  /** The floor's instantiation alone (no call), with the module's exports... */
  readonly withExports: Timing;
  /** ...and with an empty export section. */
  readonly withoutExports: Timing;
}

export interface ReuseBench {
  readonly quick: boolean;
  readonly rows: ReuseRow[];
  readonly ineligible: { readonly name: string; readonly reason: string; readonly detail: string }[];
  readonly exportCost: ExportCost | null;
  /** Versions of the real packages measured. */
  readonly versions: Record<string, string>;
  readonly trampoline: { direct: Timing; trampoline: Timing; nsPerCall: number };
  readonly tables: { untouched: Timing; one: Timing; all: Timing };
}

const nodeModules = fileURLToPath(new URL('../../node_modules/', import.meta.url));

function version(pkg: string): string {
  try {
    return (JSON.parse(readFileSync(`${nodeModules}${pkg}/package.json`, 'utf8')) as { version: string }).version;
  } catch {
    return '?';
  }
}

/** Allocates 64 bytes with the module's malloc export. */
const malloc = (name: string, ...extra: number[]): Call => ({ label: `\`${name}(64${extra.map((x) => `, ${x}`).join('')})\``, run: (e) => void e[name]!(64, ...extra) });

/**
 * The call per real module: one that writes the module's state without
 * growing its memory (a memory that grew drops a reused instance:
 * 'grown'). resvg's and lightningcss's allocators grow the memory at their
 * first allocation, so their main rows call something else, and a second
 * row each allocates (`growing`).
 */
const REAL_CALLS: Record<string, { call: Call; growing?: Call }> = {
  'sql.js': { call: malloc('Ia') }, // malloc, minified
  'vscode-oniguruma': { call: malloc('malloc') },
  '@resvg/resvg-wasm': {
    call: { label: '`__wbindgen_add_to_stack_pointer(-16)` (a global)', run: (e) => void e['__wbindgen_add_to_stack_pointer']!(-16) },
    growing: malloc('__wbindgen_malloc', 1),
  },
  'lightningcss-wasm': {
    call: { label: '`asyncify_get_state()` (reads a global)', run: (e) => void e['asyncify_get_state']!() },
    growing: malloc('napi_wasm_malloc'),
  },
  pyodide: { call: malloc('malloc') },
};

const PACKAGES: Record<string, string> = {
  'sql.js': 'sql.js',
  'quickjs (jitl release-sync)': '@jitl/quickjs-wasmfile-release-sync',
  'vscode-oniguruma': 'vscode-oniguruma',
  '@resvg/resvg-wasm': '@resvg/resvg-wasm',
  'lightningcss-wasm': 'lightningcss-wasm',
  '@electric-sql/pglite': '@electric-sql/pglite',
  pyodide: 'pyodide',
};

/** pyodide.asm.wasm (npm `pyodide`, a devDependency), or null when not installed. */
function pyodide(): { name: string; bytes: Uint8Array<ArrayBuffer> } | null {
  const file = `${nodeModules}pyodide/pyodide.asm.wasm`;
  return existsSync(file) ? { name: 'pyodide', bytes: new Uint8Array(readFileSync(file)) } : null;
}

interface Budget {
  budgetMs: number;
  warmupMs: number;
  minIterations: number;
}

function cycle(s: Subject, budget: Budget): ReuseRow {
  const engine = s.reusable?.engine ?? new Engine();
  const reusable = s.reusable?.prepared ?? engine.prepare(s.bytes, { reuse: true });
  if (!reusable.reuse.enabled) throw new Error(`${s.name}: not eligible for reuse (${reusable.reuse.reason}: ${reusable.reuse.detail})`);
  const pooledEngine = new Engine();
  const pooled = pooledEngine.prepare(s.bytes);
  const module = new WebAssembly.Module(s.bytes);
  const call = s.call.run;
  type Run = { setup: () => unknown; run: (io: unknown) => void };
  const run = (f: (io: WebAssembly.Imports) => void, setup: () => WebAssembly.Imports = s.imports): Run => ({ setup, run: f as (io: unknown) => void });
  const t = measureInterleaved<'reuse' | 'pooled' | 'native' | 'floor'>(
    {
      reuse: run((io) => {
        const l = reusable.instantiate(io);
        call(l.exports as unknown as Exports);
        l.release();
      }),
      pooled: run((io) => {
        const l = pooled.instantiate(io);
        call(l.exports as unknown as Exports);
        l.release();
      }),
      native: run((io) => call(new WebAssembly.Instance(module, io).exports as unknown as Exports)),
      floor: run((io) => call(new WebAssembly.Instance(pooled.module, io).exports as unknown as Exports), readyMemoryImports(pooled, s.imports)),
    },
    { ...budget, budgetMs: budget.budgetMs * (s.budgetScale ?? 1), maxIterations: 200_000 },
  );
  const st = engine.stats();
  engine.close();
  pooledEngine.close();
  return {
    name: s.name,
    dataBytes: s.dataBytes,
    exports: WebAssembly.Module.exports(module).length,
    call: s.call.label,
    ...t,
    instantiations: st.instantiations,
    reused: st.instancesReused,
    declined: st.reuseDeclined,
  };
}

/** `bytes` with an empty export section (nothing else refers to exports). */
function withoutExports(bytes: Uint8Array<ArrayBuffer>): Uint8Array<ArrayBuffer> {
  const section = parseModule(bytes).sections.find((s) => s.id === 7);
  if (section === undefined) return bytes;
  const out = new Uint8Array(bytes.length - (section.end - section.start) + 3);
  out.set(bytes.subarray(0, section.start), 0);
  out.set([7, 1, 0], section.start); // id, size 1, no entries
  out.set(bytes.subarray(section.end), section.start + 3);
  return out;
}

/**
 * What V8's creation of the export objects costs: the floor's
 * instantiation (no call) of the module, against the same with an empty
 * export section, interleaved.
 */
function exportCost(name: string, bytes: Uint8Array<ArrayBuffer>, imports: () => WebAssembly.Imports, budget: Budget): ExportCost {
  const engine = new Engine();
  const full = engine.prepare(bytes);
  const bare = engine.prepare(withoutExports(bytes));
  const t = measureInterleaved(
    {
      withExports: { setup: readyMemoryImports(full, imports), run: (io) => void new WebAssembly.Instance(full.module, io as WebAssembly.Imports) },
      withoutExports: { setup: readyMemoryImports(bare, imports), run: (io) => void new WebAssembly.Instance(bare.module, io as WebAssembly.Imports) },
    },
    { ...budget, maxIterations: 10_000 },
  );
  engine.close();
  return { name, exports: WebAssembly.Module.exports(full.module).length, ...t };
}

/** ns per import call: a loop calling an i32 -> i32 import n times, linked directly (native) and through a reused instance's trampoline. */
function trampolineCost(budgetMs: number): ReuseBench['trampoline'] {
  const n = 100_000;
  // loop(n): for (i = n; i; i--) acc = f(acc)
  const body = [0x02, 0x40, 0x03, 0x40, 0x20, 0, 0x45, 0x0d, 1, 0x20, 1, 0x10, 0, 0x21, 1, 0x20, 0, 0x41, 1, 0x6b, 0x21, 0, 0x0c, 0, 0x0b, 0x0b, 0x20, 1];
  const bytes = buildModule({
    importFuncs: [{ module: 'env', name: 'f', params: [I32], results: [I32] }],
    memories: [{ min: 1 }],
    funcs: [{ export: 'loop', params: [I32], results: [I32], locals: [I32], body }],
  });
  const f = (x: number): number => (x + 1) | 0;
  const engine = new Engine();
  const p = engine.prepare(bytes, { reuse: true });
  const lease = p.instantiate({ env: { f } });
  const native = new WebAssembly.Instance(new WebAssembly.Module(bytes), { env: { f } });
  const direct = native.exports['loop'] as (n: number) => number;
  const viaTrampoline = lease.exports['loop'] as (n: number) => number;
  const t = measureInterleaved({ direct: () => void direct(n), trampoline: () => void viaTrampoline(n) }, { budgetMs, maxIterations: 2000, warmupMs: 100 });
  lease.release();
  engine.close();
  return { ...t, nsPerCall: ((t.trampoline.median - t.direct.median) * 1000) / n };
}

/**
 * Restoring a table code mutated: a 521-entry funcref table (sql.js's size)
 * filled by an active segment; a tenant clears 1 entry, or all 521
 * (table.fill), and the release restores the table (the function the
 * reuse rewrite appends: table.fill + table.init).
 */
function tableRestore(budgetMs: number): ReuseBench['tables'] {
  const n = 521;
  const funcs = [{ type: 0, body: [0x41, 7] }];
  const i32c = (v: number): number[] => [0x41, ...sleb(v)];
  const bytes = buildRaw({
    types: [{ params: [], results: [I32] }, { params: [I32], results: [] }],
    funcs: [
      ...funcs,
      { type: 1, body: [0x20, 0, 0xd0, 0x70, 0x26, 0] }, // clear(i): table[i] = null
      { type: 1, body: [...i32c(0), 0xd0, 0x70, 0x20, 0, 0xfc, 17, 0] }, // clearAll(n): table.fill 0 null n
    ],
    tables: [[0x70, 0x00, ...uleb(n)]],
    memories: [[0x00, 1]],
    exports: [
      { name: 'clear', kind: 0, index: 1 },
      { name: 'clearAll', kind: 0, index: 2 },
    ],
    elems: [[0x00, ...i32c(0), 0x0b, ...uleb(n), ...new Array<number>(n).fill(0)]],
  });
  const engine = new Engine({ backgroundReset: false });
  const p = engine.prepare(bytes, { reuse: true });
  const t = measureInterleaved(
    {
      untouched: () => p.instantiate().release(),
      one: () => {
        const l = p.instantiate();
        (l.exports['clear'] as (i: number) => void)(5);
        l.release();
      },
      all: () => {
        const l = p.instantiate();
        (l.exports['clearAll'] as (i: number) => void)(n);
        l.release();
      },
    },
    { budgetMs, maxIterations: 100_000, warmupMs: 100 },
  );
  engine.close();
  return t;
}

/** Runs everything (a few seconds; `quick`: shorter budgets, the same rows). */
export function reuseBench(quick: boolean, log: (msg: string) => void = () => {}): ReuseBench {
  // Per variant and module. Native instantiations of the 256 MiB module take
  // 150-550 ms each here: 3 warm-up and 5 measured iterations are most of
  // the run.
  const budget: Budget = quick ? { budgetMs: 40, warmupMs: 20, minIterations: 5 } : { budgetMs: 100, warmupMs: 40, minIterations: 5 };
  const subjects: Subject[] = [];
  for (const size of [0, 64 * 1024, MiB, 16 * MiB, 256 * MiB]) {
    const s = synthetic(size);
    subjects.push({ name: s.name, dataBytes: size, bytes: s.bytes, imports: () => ({}), call: { label: '`store8` into the data', run: (e) => void e['store8']!(65536 + 100, 1) } });
  }
  const ineligible: ReuseBench['ineligible'] = [];
  const versions: Record<string, string> = {};
  const py = pyodide();
  const real = [...realModules().map((s) => ({ name: s.name, bytes: s.bytes, dataBytes: s.dataBytes })), ...(py ? [{ ...py, dataBytes: activeData(py.bytes) }] : [])];
  let exportSubject: Subject | null = null;
  for (const r of real) {
    versions[r.name] = version(PACKAGES[r.name] ?? r.name);
    const engine = new Engine();
    const prepared = engine.prepare(r.bytes, { reuse: true });
    const info = prepared.reuse;
    if (!info.enabled) {
      engine.close();
      ineligible.push({ name: r.name, reason: info.reason ?? '?', detail: info.detail ?? '' });
      continue;
    }
    const calls = REAL_CALLS[r.name];
    if (calls === undefined) throw new Error(`${r.name}: eligible for reuse, but no call is defined for it in benchmarks/reuse.ts`);
    const imports = stubImportsFactory(r.bytes);
    const main: Subject = { name: r.name, reusable: { engine, prepared }, dataBytes: r.dataBytes, bytes: r.bytes, imports, call: calls.call, budgetScale: r.name === 'pyodide' ? 4 : 1 };
    subjects.push(main);
    if (calls.growing) subjects.push({ name: `${r.name}, allocating`, dataBytes: r.dataBytes, bytes: r.bytes, imports, call: calls.growing });
    if (r.name === 'pyodide') {
      exportSubject = main;
      // The same stubs, frozen: a frozen import object is read once and kept (src/reuse/read-imports.ts).
      const frozen = frozenCopy(imports());
      subjects.push({ name: `${r.name}, frozen imports`, dataBytes: r.dataBytes, bytes: r.bytes, imports: () => frozen, call: calls.call, budgetScale: 4 });
    }
  }
  const rows: ReuseRow[] = [];
  for (const s of subjects) {
    const t0 = performance.now();
    rows.push(cycle(s, budget));
    log(`reuse: ${s.name} (${((performance.now() - t0) / 1000).toFixed(1)} s)`);
  }
  const exportCostRow = exportSubject ? (log('reuse: pyodide export creation ...'), exportCost(exportSubject.name, exportSubject.bytes, exportSubject.imports, { ...budget, budgetMs: budget.budgetMs * 2 })) : null;
  log('reuse: import trampoline, table restore ...');
  const trampoline = trampolineCost(quick ? 60 : 150);
  const tables = tableRestore(quick ? 60 : 150);
  return { quick, rows, ineligible, exportCost: exportCostRow, versions, trampoline, tables };
}

/** A copy of `imports` and of each of its module objects, all frozen. */
function frozenCopy(imports: WebAssembly.Imports): WebAssembly.Imports {
  const out: Record<string, Readonly<Record<string, WebAssembly.ImportValue>>> = {};
  for (const [name, ns] of Object.entries(imports)) out[name] = Object.freeze({ ...ns });
  return Object.freeze(out);
}

function activeData(bytes: Uint8Array): number {
  return parseModule(bytes)
    .data.filter((d) => d.mode === 'active')
    .reduce((n, d) => n + (d.dataEnd - d.dataStart), 0);
}

/** The results.md section's body (under a "## Instance reuse" heading). */
export function reuseMarkdown(b: ReuseBench): string[] {
  const cell = (t: Timing): string => `${fmtUs(t.median)} / ${fmtUs(t.p99)}`;
  const declined = (r: ReuseRow): string => {
    const d = Object.entries(r.declined).filter(([, n]) => (n ?? 0) > 0);
    return d.length ? ` (${d.map(([why, n]) => `${n} '${why}'`).join(', ')})` : '';
  };
  const named = (name: string): string => (b.versions[name] ? `${name} ${b.versions[name]}` : name);
  const lines = [
    'One cycle: instantiate, one call through the exports, release (native and floor: `new WebAssembly.Instance` and the call). ' +
      'Median / p99 per cycle, the four variants interleaved in one run. "reuse": `engine.prepare(bytes, { reuse: true })`, the released ' +
      'instance reset and kept for the next lease; "pooled": the default, the memory pooled and the instance made by V8 each time; ' +
      '"floor": V8 instantiating the rewritten module into a ready memory, the least a new instance of it can cost. ' +
      'Real modules are raw, with stub imports (functions returning 0), as in the instantiation table.',
    '',
    '| module | active data | exports | call | reuse | pooled | native | floor | pooled / reuse | native / reuse | floor / reuse | served by a reused instance |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|',
    ...b.rows.map((r) => {
      const suffix = /, (allocating|frozen imports)$/.exec(r.name)?.[0] ?? '';
      const name = `${named(r.name.slice(0, r.name.length - suffix.length))}${suffix}`;
      return (
        `| ${name} | ${label(r.dataBytes)} | ${r.exports} | ${r.call} | ${cell(r.reuse)} | ${cell(r.pooled)} | ${cell(r.native)} | ${cell(r.floor)} | ` +
        `${fmtRatio(r.pooled.median / r.reuse.median)} | ${fmtRatio(r.native.median / r.reuse.median)} | ${fmtRatio(r.floor.median / r.reuse.median)} | ` +
        `${((r.reused / Math.max(1, r.instantiations)) * 100).toFixed(0)}%${declined(r)} |`
      );
    }),
    '',
    '"served by a reused instance": the share of the reuse engine\'s instantiations (warm-up included) that took an idle instance; ' +
      'the others made one (the first two: while one resets on the background thread, the next lease gets a second instance), ' +
      "or dropped it at release, by reason (`stats().reuseDeclined`). resvg's and lightningcss's allocators grow the memory at " +
      'their first allocation, and a memory that grew cannot be reset to its initial size: the instance is dropped at every ' +
      "release ('grown'), so an allocating tenant of those modules gets no reuse (the \"allocating\" rows); their main rows call " +
      'something that does not allocate. "frozen imports": the same stub imports, the import object and each of its module objects ' +
      'frozen: a frozen import object (not a Proxy, every name an own data property) answers the same for ever, so it is read once and ' +
      "kept; otherwise every lease reads each import as V8 would (one Get of the module, one of the name), pyodide's 548 of them included.",
  ];
  if (b.ineligible.length) {
    lines.push('', 'Not eligible for reuse (`prepared.reuse.reason`: detail); they run as without the option:', '');
    for (const i of b.ineligible) lines.push(`- ${named(i.name)}: \`'${i.reason}'\`: ${i.detail}`);
  }
  const e = b.exportCost;
  if (e) {
    const row = b.rows.find((r) => r.name === e.name);
    const frozenRow = b.rows.find((r) => r.name === `${e.name}, frozen imports`);
    lines.push(
      '',
      `V8's export creation, ${e.name}: the floor's instantiation alone (no call) took ${cell(e.withExports)} with its ${e.exports} exports ` +
        `and ${cell(e.withoutExports)} with an empty export section: ${fmtUs(e.withExports.median - e.withoutExports.median)} per instance ` +
        'to make the export objects (medians, interleaved). A reused instance makes them once; `lease.exports` wraps only the exports read.' +
        (row
          ? ` In this run a reused ${e.name} instance cycled ${fmtRatio(row.native.median / row.reuse.median)} faster than a native instantiation ` +
            (frozenRow ? `(${fmtRatio(frozenRow.native.median / frozenRow.reuse.median)} with its imports frozen) ` : '') +
            '(medians; the goal of issue 12 is 1,000x). Native\'s time (ms of allocation, copying and export creation) varies with the ' +
            "machine's load far more than the reuse cycle's: take the ratio from an idle machine."
          : ''),
    );
  }
  const t = b.tables;
  lines.push(
    '',
    `Table restore (a 521-entry funcref table filled by one segment, reuse cycle with the reset inline): untouched ${fmtUs(t.untouched.median)}, ` +
      `1 entry changed ${fmtUs(t.one.median)}, all 521 changed ${fmtUs(t.all.median)} (medians).`,
    `Import trampoline: ${b.trampoline.nsPerCall.toFixed(1)} ns per call (100,000 calls of an i32 -> i32 import: direct ${fmtUs(b.trampoline.direct.median)}, ` +
      `through the trampoline ${fmtUs(b.trampoline.trampoline.median)}, medians).`,
  );
  return lines;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const quick = process.argv.includes('--quick');
  const t0 = performance.now();
  const b = reuseBench(quick, (m) => process.stderr.write(`${m}\n`));
  console.log(reuseMarkdown(b).join('\n'));
  console.log(`\n(${((performance.now() - t0) / 1000).toFixed(1)} s; iterations per row reuse/pooled/native/floor: ${b.rows.map((r) => `${r.reuse.n}/${r.pooled.n}/${r.native.n}/${r.floor.n}`).join(', ')})`);
  const dir = fileURLToPath(new URL('../../benchmarks/results/', import.meta.url));
  mkdirSync(dir, { recursive: true });
  writeFileSync(`${dir}reuse.json`, JSON.stringify({ ...b, node: process.version }, null, 2));
}
