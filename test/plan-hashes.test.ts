/**
 * Planning real modules gives byte for byte what it gave before the
 * planner was made faster (the struct-of-arrays reader, analysis and
 * rewriter): the constants below were recorded with the code of main at
 * e668936, before that change. For each module and each way the engine
 * plans it (native backend; with instance reuse; with the private state
 * for snapshots; copy backend), the test hashes
 *  - the rewritten module's bytes,
 *  - each image's bytes (flattenImage of the plan's segments, as the
 *    engine builds it; position-independent segments placed at a fixed
 *    base), with its offset and length,
 *  - the plans (exclusions, conditions, placed segments, segment indices)
 *    and the parsed data segments (every field).
 * A module missing from node_modules fails the test (they are devDependencies).
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Engine } from '../src/index.js';
import { coreOf } from '../src/engine.js';
import { planModule } from '../src/prepared.js';
import { flattenImage, flattenPlan } from '../src/image/flatten.js';
import { coveredPages } from '../src/image/analyze.js';
import { pagesCovered } from '../src/policy.js';
import type { BackendKind } from '../src/backend/backend.js';

const root = fileURLToPath(new URL('../../', import.meta.url));

const MODULES: Record<string, string> = {
  esbuild: 'esbuild-wasm/esbuild.wasm',
  'sql.js': 'sql.js/dist/sql-wasm.wasm',
  pglite: '@electric-sql/pglite/dist/pglite.wasm',
  initdb: '@electric-sql/pglite/dist/initdb.wasm',
  ffmpeg: '@ffmpeg/core/dist/esm/ffmpeg-core.wasm',
  swc: '@swc/wasm/wasm_bg.wasm',
  quickjs: '@jitl/quickjs-wasmfile-release-sync/dist/emscripten-module.wasm',
  'tree-sitter-javascript': 'tree-sitter-javascript/tree-sitter-javascript.wasm',
  'web-tree-sitter': 'web-tree-sitter/web-tree-sitter.wasm',
  lightningcss: 'lightningcss-wasm/lightningcss_node.wasm',
  resvg: '@resvg/resvg-wasm/index_bg.wasm',
  pyodide: 'pyodide/pyodide.asm.wasm',
  oniguruma: 'vscode-oniguruma/release/onig.wasm',
};

type Variant = { readonly backend: BackendKind; readonly privateState: boolean; readonly reuse: boolean; readonly nativeWhenFaster?: boolean };
const VARIANTS: Record<string, Variant> = {
  native: { backend: 'native', privateState: false, reuse: false },
  reuse: { backend: 'native', privateState: false, reuse: true },
  snapshots: { backend: 'native', privateState: true, reuse: false },
  copy: { backend: 'copy', privateState: false, reuse: false },
  // Images for imported memories too, however small their data (src/policy.ts would leave it to V8).
  'every-image': { backend: 'native', privateState: false, reuse: false, nativeWhenFaster: false },
};

const sha = (data: Uint8Array | string): string => createHash('sha256').update(data).digest('hex');
const json = (v: unknown): string => JSON.stringify(v, (_k, x: unknown) => (typeof x === 'bigint' ? `${x}n` : x));

/** What planning `bytes` gives, as hashes. */
function digestPlan(bytes: Uint8Array<ArrayBuffer>, variant: Variant): Record<string, unknown> {
  const core = coreOf(new Engine({ backend: variant.backend, nativeWhenFaster: variant.nativeWhenFaster ?? true }));
  const plan = planModule(core, bytes, variant.privateState, variant.reuse);
  const parsed = plan.parsed!;
  const data = sha(
    json(parsed.data.map((d) => [d.index, d.mode, d.memory, d.offset && [d.offset.type, d.offset.constant, d.offset.global, d.offset.dynamic], d.dataStart, d.dataEnd, d.start, d.end])),
  );
  const plans = sha(
    json(
      plan.plans.map((p) => [
        p.index,
        p.imported,
        p.type,
        p.excluded,
        p.condition,
        p.fallback ?? null,
        [...p.segmentIndices],
        [...p.segments].map((s) => [s.offset, s.global ?? null, s.dataStart, s.dataEnd]),
      ]),
    ),
  );
  const images: string[] = [];
  for (const p of plan.plans) {
    if (p.excluded !== null) continue;
    // Position-independent segments: as if their global held 65536.
    const placed = [...p.segments].map((s) => ({ offset: s.global == null ? s.offset : (65536 + s.offset) % 2 ** 32, dataStart: s.dataStart, dataEnd: s.dataEnd }));
    const flat = flattenImage(bytes, placed, core.backend.pageSize);
    images.push(`${p.index}@${flat.offset}+${flat.length}:${sha(flat.bytes)}`);
    if (p.condition === null) {
      // The engine builds a fixed image from the plan's columns (flattenPlan): the same image.
      const fromColumns = flattenPlan(bytes, p, core.backend.pageSize);
      assert.deepEqual([fromColumns.offset, fromColumns.length, sha(fromColumns.bytes)], [flat.offset, flat.length, sha(flat.bytes)], `${p.index}: flattenPlan`);
    }
  }
  // The cost model's page count from the columns equals pagesCovered() of the segments' ranges.
  const fixed = plan.plans.filter((p) => p.excluded === null && p.condition === null);
  const ranges = fixed.flatMap((p) => p.segments.map((s) => ({ offset: s.offset, length: s.dataEnd - s.dataStart })));
  assert.equal(coveredPages(fixed, core.backend.pageSize), pagesCovered(ranges, core.backend.pageSize));
  return {
    rewritten: plan.rewritten === null ? null : sha(plan.rewritten.bytes),
    memoryModule: plan.rewritten?.memoryModule ?? null,
    images,
    plans,
    data,
    reuse: plan.reuse == null ? null : plan.reuse.enabled ? 'enabled' : plan.reuse.reason,
  };
}

/**
 * Recorded with main's code (e668936), before the faster planner; the
 * native, reuse and snapshots plans of pglite, quickjs, tree-sitter-javascript
 * and web-tree-sitter again when the cost of an image in an imported memory
 * went from 900 to 80 µs (src/policy.ts): quickjs's and web-tree-sitter's
 * differ only in that number in their exclusion's message, and pglite's and
 * tree-sitter-javascript's native and reuse plans are now those recorded for
 * 'every-image'.
 */
const EXPECTED: Record<string, Record<string, Record<string, unknown>>> = {
  "esbuild": {
    "native": {
      "rewritten": "ac12decfc06a1f04089adef4b0bc012b6166e25547360feb2ad8178f0fedbc7c",
      "memoryModule": "wasm-cow:memory",
      "images": [
        "0@81920+4960256:c7ac1b87ed151d3c3defc1b44c6a3d9d6638f2d58a1a9e3f018806502bdc1571"
      ],
      "plans": "1f2807aa12dc08f4eba206e21cc0104f7935117bdef2ed7b378eac68a5c6dece",
      "data": "75e47ace55b264e7ced2b4c3a8a6b8f0177395a3b8c207d7ed2df504d3c8bbca",
      "reuse": null
    },
    "reuse": {
      "rewritten": "ac12decfc06a1f04089adef4b0bc012b6166e25547360feb2ad8178f0fedbc7c",
      "memoryModule": "wasm-cow:memory",
      "images": [
        "0@81920+4960256:c7ac1b87ed151d3c3defc1b44c6a3d9d6638f2d58a1a9e3f018806502bdc1571"
      ],
      "plans": "1f2807aa12dc08f4eba206e21cc0104f7935117bdef2ed7b378eac68a5c6dece",
      "data": "75e47ace55b264e7ced2b4c3a8a6b8f0177395a3b8c207d7ed2df504d3c8bbca",
      "reuse": "duplicate-import"
    },
    "snapshots": {
      "rewritten": "fe95e1b3a55f0c5b068e61fe163af61aa73724e9c6e3bb986d6658724e8302b6",
      "memoryModule": "wasm-cow:memory",
      "images": [
        "0@81920+4960256:c7ac1b87ed151d3c3defc1b44c6a3d9d6638f2d58a1a9e3f018806502bdc1571"
      ],
      "plans": "1f2807aa12dc08f4eba206e21cc0104f7935117bdef2ed7b378eac68a5c6dece",
      "data": "75e47ace55b264e7ced2b4c3a8a6b8f0177395a3b8c207d7ed2df504d3c8bbca",
      "reuse": null
    },
    "copy": {
      "rewritten": "ac12decfc06a1f04089adef4b0bc012b6166e25547360feb2ad8178f0fedbc7c",
      "memoryModule": "wasm-cow:memory",
      "images": [
        "0@81920+4960256:c7ac1b87ed151d3c3defc1b44c6a3d9d6638f2d58a1a9e3f018806502bdc1571"
      ],
      "plans": "1f2807aa12dc08f4eba206e21cc0104f7935117bdef2ed7b378eac68a5c6dece",
      "data": "75e47ace55b264e7ced2b4c3a8a6b8f0177395a3b8c207d7ed2df504d3c8bbca",
      "reuse": null
    },
    "every-image": {
      "rewritten": "ac12decfc06a1f04089adef4b0bc012b6166e25547360feb2ad8178f0fedbc7c",
      "memoryModule": "wasm-cow:memory",
      "images": [
        "0@81920+4960256:c7ac1b87ed151d3c3defc1b44c6a3d9d6638f2d58a1a9e3f018806502bdc1571"
      ],
      "plans": "1f2807aa12dc08f4eba206e21cc0104f7935117bdef2ed7b378eac68a5c6dece",
      "data": "75e47ace55b264e7ced2b4c3a8a6b8f0177395a3b8c207d7ed2df504d3c8bbca",
      "reuse": null
    }
  },
  "sql.js": {
    "native": {
      "rewritten": "9539e6760b7ed66d4575a51f945e11c33f7715661639164b03d4f36e2a1feeae",
      "memoryModule": "wasm-cow:memory",
      "images": [
        "0@0+81920:13e3c0854224362ff5335d54e3c760e8d2dd1eb58c4bf7537bd828a9c1f34cd0"
      ],
      "plans": "37012d3bc6a4884ef753fa1d9691150436c29af3ccad88c4b034b936809859c7",
      "data": "7a2565285b8df859975503cddca2c698aad312d2371802b8e3dbe2213fd274f4",
      "reuse": null
    },
    "reuse": {
      "rewritten": "246097892126834e30e7f0d4ba25f7b44e80639f051d562b61613083672e51a8",
      "memoryModule": "wasm-cow:memory",
      "images": [
        "0@0+81920:13e3c0854224362ff5335d54e3c760e8d2dd1eb58c4bf7537bd828a9c1f34cd0"
      ],
      "plans": "37012d3bc6a4884ef753fa1d9691150436c29af3ccad88c4b034b936809859c7",
      "data": "7a2565285b8df859975503cddca2c698aad312d2371802b8e3dbe2213fd274f4",
      "reuse": "enabled"
    },
    "snapshots": {
      "rewritten": "246097892126834e30e7f0d4ba25f7b44e80639f051d562b61613083672e51a8",
      "memoryModule": "wasm-cow:memory",
      "images": [
        "0@0+81920:13e3c0854224362ff5335d54e3c760e8d2dd1eb58c4bf7537bd828a9c1f34cd0"
      ],
      "plans": "37012d3bc6a4884ef753fa1d9691150436c29af3ccad88c4b034b936809859c7",
      "data": "7a2565285b8df859975503cddca2c698aad312d2371802b8e3dbe2213fd274f4",
      "reuse": null
    },
    "copy": {
      "rewritten": "9539e6760b7ed66d4575a51f945e11c33f7715661639164b03d4f36e2a1feeae",
      "memoryModule": "wasm-cow:memory",
      "images": [
        "0@0+81920:13e3c0854224362ff5335d54e3c760e8d2dd1eb58c4bf7537bd828a9c1f34cd0"
      ],
      "plans": "37012d3bc6a4884ef753fa1d9691150436c29af3ccad88c4b034b936809859c7",
      "data": "7a2565285b8df859975503cddca2c698aad312d2371802b8e3dbe2213fd274f4",
      "reuse": null
    },
    "every-image": {
      "rewritten": "9539e6760b7ed66d4575a51f945e11c33f7715661639164b03d4f36e2a1feeae",
      "memoryModule": "wasm-cow:memory",
      "images": [
        "0@0+81920:13e3c0854224362ff5335d54e3c760e8d2dd1eb58c4bf7537bd828a9c1f34cd0"
      ],
      "plans": "37012d3bc6a4884ef753fa1d9691150436c29af3ccad88c4b034b936809859c7",
      "data": "7a2565285b8df859975503cddca2c698aad312d2371802b8e3dbe2213fd274f4",
      "reuse": null
    }
  },
  "pglite": {
    "native": {
      "rewritten": "b979af1c893aec9555abe15e3121a13ba410187b0be3e93e8c34bba90cf21fe9",
      "memoryModule": null,
      "images": [
        "0@4096+2781184:821514fd0de1e0e91045ff902700ece18d5227be3b8492a756b8e7934d11d7c8"
      ],
      "plans": "b5f31fe891b100e3ecd84e0420abc2477538550c8aa7551144618d12d7f9d3a5",
      "data": "653c3630603eab6b48bddf7d3aa10f0d6cb5a6b150c0b74675cac38d0a893a22",
      "reuse": null
    },
    "reuse": {
      "rewritten": "b979af1c893aec9555abe15e3121a13ba410187b0be3e93e8c34bba90cf21fe9",
      "memoryModule": null,
      "images": [
        "0@4096+2781184:821514fd0de1e0e91045ff902700ece18d5227be3b8492a756b8e7934d11d7c8"
      ],
      "plans": "b5f31fe891b100e3ecd84e0420abc2477538550c8aa7551144618d12d7f9d3a5",
      "data": "653c3630603eab6b48bddf7d3aa10f0d6cb5a6b150c0b74675cac38d0a893a22",
      "reuse": "imported-memory-data"
    },
    "snapshots": {
      "rewritten": "145717d7ec7552e6d9d763c4002a56b5b5c65ffbf19f5bebd43abde697048b9b",
      "memoryModule": null,
      "images": [
        "0@4096+2781184:821514fd0de1e0e91045ff902700ece18d5227be3b8492a756b8e7934d11d7c8"
      ],
      "plans": "b5f31fe891b100e3ecd84e0420abc2477538550c8aa7551144618d12d7f9d3a5",
      "data": "653c3630603eab6b48bddf7d3aa10f0d6cb5a6b150c0b74675cac38d0a893a22",
      "reuse": null
    },
    "copy": {
      "rewritten": null,
      "memoryModule": null,
      "images": [],
      "plans": "8e88d2e12f24c8d8394101e2fc8e61dbff46121bdbc3f8d25236b3a228403932",
      "data": "653c3630603eab6b48bddf7d3aa10f0d6cb5a6b150c0b74675cac38d0a893a22",
      "reuse": null
    },
    "every-image": {
      "rewritten": "b979af1c893aec9555abe15e3121a13ba410187b0be3e93e8c34bba90cf21fe9",
      "memoryModule": null,
      "images": [
        "0@4096+2781184:821514fd0de1e0e91045ff902700ece18d5227be3b8492a756b8e7934d11d7c8"
      ],
      "plans": "b5f31fe891b100e3ecd84e0420abc2477538550c8aa7551144618d12d7f9d3a5",
      "data": "653c3630603eab6b48bddf7d3aa10f0d6cb5a6b150c0b74675cac38d0a893a22",
      "reuse": null
    }
  },
  "initdb": {
    "native": {
      "rewritten": "42782f80fab05cb949ca031fb64459516b4acbaa5a4b43ad5c1505bacf331118",
      "memoryModule": "wasm-cow:memory",
      "images": [
        "0@0+102400:88cf35195cab8cd0225d3f3bc99962e1a6e9fe22553915f29b19a06a42ee21dd"
      ],
      "plans": "354a844c51dae79e473bba15b3b562e05916260d5e3fb1d22d3e3c4e45f6731a",
      "data": "0e10228ff4e7c3496d390c1127b8ca96a7a846086d001172d5ab9a614beeddea",
      "reuse": null
    },
    "reuse": {
      "rewritten": "f40e1c35a2997049ae47f2ceb277fbcd743d5b7a07fae327a1d3f4ee8a5c3224",
      "memoryModule": "wasm-cow:memory",
      "images": [
        "0@0+102400:88cf35195cab8cd0225d3f3bc99962e1a6e9fe22553915f29b19a06a42ee21dd"
      ],
      "plans": "354a844c51dae79e473bba15b3b562e05916260d5e3fb1d22d3e3c4e45f6731a",
      "data": "0e10228ff4e7c3496d390c1127b8ca96a7a846086d001172d5ab9a614beeddea",
      "reuse": "enabled"
    },
    "snapshots": {
      "rewritten": "f40e1c35a2997049ae47f2ceb277fbcd743d5b7a07fae327a1d3f4ee8a5c3224",
      "memoryModule": "wasm-cow:memory",
      "images": [
        "0@0+102400:88cf35195cab8cd0225d3f3bc99962e1a6e9fe22553915f29b19a06a42ee21dd"
      ],
      "plans": "354a844c51dae79e473bba15b3b562e05916260d5e3fb1d22d3e3c4e45f6731a",
      "data": "0e10228ff4e7c3496d390c1127b8ca96a7a846086d001172d5ab9a614beeddea",
      "reuse": null
    },
    "copy": {
      "rewritten": "42782f80fab05cb949ca031fb64459516b4acbaa5a4b43ad5c1505bacf331118",
      "memoryModule": "wasm-cow:memory",
      "images": [
        "0@0+102400:88cf35195cab8cd0225d3f3bc99962e1a6e9fe22553915f29b19a06a42ee21dd"
      ],
      "plans": "354a844c51dae79e473bba15b3b562e05916260d5e3fb1d22d3e3c4e45f6731a",
      "data": "0e10228ff4e7c3496d390c1127b8ca96a7a846086d001172d5ab9a614beeddea",
      "reuse": null
    },
    "every-image": {
      "rewritten": "42782f80fab05cb949ca031fb64459516b4acbaa5a4b43ad5c1505bacf331118",
      "memoryModule": "wasm-cow:memory",
      "images": [
        "0@0+102400:88cf35195cab8cd0225d3f3bc99962e1a6e9fe22553915f29b19a06a42ee21dd"
      ],
      "plans": "354a844c51dae79e473bba15b3b562e05916260d5e3fb1d22d3e3c4e45f6731a",
      "data": "0e10228ff4e7c3496d390c1127b8ca96a7a846086d001172d5ab9a614beeddea",
      "reuse": null
    }
  },
  "ffmpeg": {
    "native": {
      "rewritten": "f923c1105ff5d384e0dbad7ec620267cec2f48aa1af37081a81f75fb12b9fc7a",
      "memoryModule": "wasm-cow:memory",
      "images": [
        "0@0+6078464:f0c2d0cf9b6dd79d496238896228d38e2b662a6a7429bf6aa70372e623a97e25"
      ],
      "plans": "8e6df5c4cb8a3c4c3c2b4f46b0b4e700fc123da682c838d4d5761c849ba750a2",
      "data": "bd44e8c9205b92b4a52ee0af1f28f562d2d7c406998699a19d4e6c969594f541",
      "reuse": null
    },
    "reuse": {
      "rewritten": "512ca4c8192f532cf34cec61e73578b3f29ee1ecc758464345d5d8cf7927d60f",
      "memoryModule": "wasm-cow:memory",
      "images": [
        "0@0+6078464:f0c2d0cf9b6dd79d496238896228d38e2b662a6a7429bf6aa70372e623a97e25"
      ],
      "plans": "8e6df5c4cb8a3c4c3c2b4f46b0b4e700fc123da682c838d4d5761c849ba750a2",
      "data": "bd44e8c9205b92b4a52ee0af1f28f562d2d7c406998699a19d4e6c969594f541",
      "reuse": "enabled"
    },
    "snapshots": {
      "rewritten": "512ca4c8192f532cf34cec61e73578b3f29ee1ecc758464345d5d8cf7927d60f",
      "memoryModule": "wasm-cow:memory",
      "images": [
        "0@0+6078464:f0c2d0cf9b6dd79d496238896228d38e2b662a6a7429bf6aa70372e623a97e25"
      ],
      "plans": "8e6df5c4cb8a3c4c3c2b4f46b0b4e700fc123da682c838d4d5761c849ba750a2",
      "data": "bd44e8c9205b92b4a52ee0af1f28f562d2d7c406998699a19d4e6c969594f541",
      "reuse": null
    },
    "copy": {
      "rewritten": "f923c1105ff5d384e0dbad7ec620267cec2f48aa1af37081a81f75fb12b9fc7a",
      "memoryModule": "wasm-cow:memory",
      "images": [
        "0@0+6078464:f0c2d0cf9b6dd79d496238896228d38e2b662a6a7429bf6aa70372e623a97e25"
      ],
      "plans": "8e6df5c4cb8a3c4c3c2b4f46b0b4e700fc123da682c838d4d5761c849ba750a2",
      "data": "bd44e8c9205b92b4a52ee0af1f28f562d2d7c406998699a19d4e6c969594f541",
      "reuse": null
    },
    "every-image": {
      "rewritten": "f923c1105ff5d384e0dbad7ec620267cec2f48aa1af37081a81f75fb12b9fc7a",
      "memoryModule": "wasm-cow:memory",
      "images": [
        "0@0+6078464:f0c2d0cf9b6dd79d496238896228d38e2b662a6a7429bf6aa70372e623a97e25"
      ],
      "plans": "8e6df5c4cb8a3c4c3c2b4f46b0b4e700fc123da682c838d4d5761c849ba750a2",
      "data": "bd44e8c9205b92b4a52ee0af1f28f562d2d7c406998699a19d4e6c969594f541",
      "reuse": null
    }
  },
  "swc": {
    "native": {
      "rewritten": "4dc9cb6b1126e4d117bdc2594f38fd86a2c6a7760ce734dc9d1d7cef4467f477",
      "memoryModule": "wasm-cow:memory",
      "images": [
        "0@1048576+2056192:7acecccd185595ec6433952f96b707a598d74032e31c5b2a7ff7b2de1de1a4ab"
      ],
      "plans": "7ef21db219663af7f5763c9da59b4d2f4e1239305e1c2ab3c3843c4e0125162a",
      "data": "8af64764170672795c2e926f17c789d3ed820d09dedcb40bd3719c555087598b",
      "reuse": null
    },
    "reuse": {
      "rewritten": "962dc59d1531a2273ba0ec66f4313f2ee4908b583398a323fb293125431a7acd",
      "memoryModule": "wasm-cow:memory",
      "images": [
        "0@1048576+2056192:7acecccd185595ec6433952f96b707a598d74032e31c5b2a7ff7b2de1de1a4ab"
      ],
      "plans": "7ef21db219663af7f5763c9da59b4d2f4e1239305e1c2ab3c3843c4e0125162a",
      "data": "8af64764170672795c2e926f17c789d3ed820d09dedcb40bd3719c555087598b",
      "reuse": "enabled"
    },
    "snapshots": {
      "rewritten": "962dc59d1531a2273ba0ec66f4313f2ee4908b583398a323fb293125431a7acd",
      "memoryModule": "wasm-cow:memory",
      "images": [
        "0@1048576+2056192:7acecccd185595ec6433952f96b707a598d74032e31c5b2a7ff7b2de1de1a4ab"
      ],
      "plans": "7ef21db219663af7f5763c9da59b4d2f4e1239305e1c2ab3c3843c4e0125162a",
      "data": "8af64764170672795c2e926f17c789d3ed820d09dedcb40bd3719c555087598b",
      "reuse": null
    },
    "copy": {
      "rewritten": "4dc9cb6b1126e4d117bdc2594f38fd86a2c6a7760ce734dc9d1d7cef4467f477",
      "memoryModule": "wasm-cow:memory",
      "images": [
        "0@1048576+2056192:7acecccd185595ec6433952f96b707a598d74032e31c5b2a7ff7b2de1de1a4ab"
      ],
      "plans": "7ef21db219663af7f5763c9da59b4d2f4e1239305e1c2ab3c3843c4e0125162a",
      "data": "8af64764170672795c2e926f17c789d3ed820d09dedcb40bd3719c555087598b",
      "reuse": null
    },
    "every-image": {
      "rewritten": "4dc9cb6b1126e4d117bdc2594f38fd86a2c6a7760ce734dc9d1d7cef4467f477",
      "memoryModule": "wasm-cow:memory",
      "images": [
        "0@1048576+2056192:7acecccd185595ec6433952f96b707a598d74032e31c5b2a7ff7b2de1de1a4ab"
      ],
      "plans": "7ef21db219663af7f5763c9da59b4d2f4e1239305e1c2ab3c3843c4e0125162a",
      "data": "8af64764170672795c2e926f17c789d3ed820d09dedcb40bd3719c555087598b",
      "reuse": null
    }
  },
  "quickjs": {
    "native": {
      "rewritten": null,
      "memoryModule": null,
      "images": [],
      "plans": "fa3828b91c63c302a771ce22af9970e748cf6d6384c568c8b8fa88a86a3c3f1d",
      "data": "05eb35e5008cf984dcf77b40517996191c33ca68ecb46f960fbd39e448ac11ef",
      "reuse": null
    },
    "reuse": {
      "rewritten": null,
      "memoryModule": null,
      "images": [],
      "plans": "fa3828b91c63c302a771ce22af9970e748cf6d6384c568c8b8fa88a86a3c3f1d",
      "data": "05eb35e5008cf984dcf77b40517996191c33ca68ecb46f960fbd39e448ac11ef",
      "reuse": "imported-memory-data"
    },
    "snapshots": {
      "rewritten": "64e4102b5152d144532fa68939f06a36ade2b87c05816850c7ea38bded34af95",
      "memoryModule": null,
      "images": [],
      "plans": "fa3828b91c63c302a771ce22af9970e748cf6d6384c568c8b8fa88a86a3c3f1d",
      "data": "05eb35e5008cf984dcf77b40517996191c33ca68ecb46f960fbd39e448ac11ef",
      "reuse": null
    },
    "copy": {
      "rewritten": null,
      "memoryModule": null,
      "images": [],
      "plans": "e0dc4fc7551edf04a37d87d7d9bdb267965963ee026d3799ed47440be8db0ebd",
      "data": "05eb35e5008cf984dcf77b40517996191c33ca68ecb46f960fbd39e448ac11ef",
      "reuse": null
    },
    "every-image": {
      "rewritten": "90111a07237bcf32598364a895b5db5792b2dbc5ef79ebbbc54f5d7c8cfaecfe",
      "memoryModule": null,
      "images": [
        "0@0+90112:08a1627784924df68ad719d2791d79c36820ea6e4bec08cff0d40f0340c51c42"
      ],
      "plans": "f65458489ece58aa8cbd9f00aac9431a6404bd7299e432da0790fe8920adc7ef",
      "data": "05eb35e5008cf984dcf77b40517996191c33ca68ecb46f960fbd39e448ac11ef",
      "reuse": null
    }
  },
  "tree-sitter-javascript": {
    "native": {
      "rewritten": "f8588119f7d6322b73309a6fadbb7cf4bd7aceeb407dfa27643930596f0031b8",
      "memoryModule": null,
      "images": [
        "0@65536+385024:7f3088c5a80981a52f92346d09da3eb7a5cf920353f48ee910c9241ac71b319e"
      ],
      "plans": "0a2eef047a7166654d1a1b38c42b858485002056e2f74e7921c37398805831fc",
      "data": "2b91d906662e468bc1c37017498511d6d1a7cba1144acec1b826ece7f8c0a7f6",
      "reuse": null
    },
    "reuse": {
      "rewritten": "f8588119f7d6322b73309a6fadbb7cf4bd7aceeb407dfa27643930596f0031b8",
      "memoryModule": null,
      "images": [
        "0@65536+385024:7f3088c5a80981a52f92346d09da3eb7a5cf920353f48ee910c9241ac71b319e"
      ],
      "plans": "0a2eef047a7166654d1a1b38c42b858485002056e2f74e7921c37398805831fc",
      "data": "2b91d906662e468bc1c37017498511d6d1a7cba1144acec1b826ece7f8c0a7f6",
      "reuse": "imported-memory-data"
    },
    "snapshots": {
      "rewritten": "f8588119f7d6322b73309a6fadbb7cf4bd7aceeb407dfa27643930596f0031b8",
      "memoryModule": null,
      "images": [
        "0@65536+385024:7f3088c5a80981a52f92346d09da3eb7a5cf920353f48ee910c9241ac71b319e"
      ],
      "plans": "0a2eef047a7166654d1a1b38c42b858485002056e2f74e7921c37398805831fc",
      "data": "2b91d906662e468bc1c37017498511d6d1a7cba1144acec1b826ece7f8c0a7f6",
      "reuse": null
    },
    "copy": {
      "rewritten": null,
      "memoryModule": null,
      "images": [],
      "plans": "f12a81cfe09258f1de13961d7da4da6a9b82879e92ef84142d322f8b7d592c2a",
      "data": "2b91d906662e468bc1c37017498511d6d1a7cba1144acec1b826ece7f8c0a7f6",
      "reuse": null
    },
    "every-image": {
      "rewritten": "f8588119f7d6322b73309a6fadbb7cf4bd7aceeb407dfa27643930596f0031b8",
      "memoryModule": null,
      "images": [
        "0@65536+385024:7f3088c5a80981a52f92346d09da3eb7a5cf920353f48ee910c9241ac71b319e"
      ],
      "plans": "0a2eef047a7166654d1a1b38c42b858485002056e2f74e7921c37398805831fc",
      "data": "2b91d906662e468bc1c37017498511d6d1a7cba1144acec1b826ece7f8c0a7f6",
      "reuse": null
    }
  },
  "web-tree-sitter": {
    "native": {
      "rewritten": null,
      "memoryModule": null,
      "images": [],
      "plans": "acf36aaac04d65d0061cae14a33a0c3d4d67268100cfd2b3f41e0a027825eb9a",
      "data": "f6af54804b037b5447204e0c968cdacb4ce292a064493e8a0da7bb837f44ffa9",
      "reuse": null
    },
    "reuse": {
      "rewritten": null,
      "memoryModule": null,
      "images": [],
      "plans": "acf36aaac04d65d0061cae14a33a0c3d4d67268100cfd2b3f41e0a027825eb9a",
      "data": "f6af54804b037b5447204e0c968cdacb4ce292a064493e8a0da7bb837f44ffa9",
      "reuse": "imported-memory-data"
    },
    "snapshots": {
      "rewritten": "2d40a29f6c396858a12b217c9c90753997f1fea88a0778f2b4956e015eb44e1e",
      "memoryModule": null,
      "images": [],
      "plans": "acf36aaac04d65d0061cae14a33a0c3d4d67268100cfd2b3f41e0a027825eb9a",
      "data": "f6af54804b037b5447204e0c968cdacb4ce292a064493e8a0da7bb837f44ffa9",
      "reuse": null
    },
    "copy": {
      "rewritten": null,
      "memoryModule": null,
      "images": [],
      "plans": "ef398a297e8df3aaedd8b5ce3979c096868afff1b681759c5caf7f9137abfbf3",
      "data": "f6af54804b037b5447204e0c968cdacb4ce292a064493e8a0da7bb837f44ffa9",
      "reuse": null
    },
    "every-image": {
      "rewritten": "2a1c1c1cc2683f9f45c4015cabbc125391eeb553b044d6edc91c7bc66f989b37",
      "memoryModule": null,
      "images": [
        "0@65536+16384:19e796f91ffa1d468a57dd42ff6902b95844fde34a780bcd5f8d25a0b2ed5c6c"
      ],
      "plans": "d4fa8e53dc1099cbf31d0bd2a63b4e13dbe83f679cb22bd4aa768b8723363e87",
      "data": "f6af54804b037b5447204e0c968cdacb4ce292a064493e8a0da7bb837f44ffa9",
      "reuse": null
    }
  },
  "lightningcss": {
    "native": {
      "rewritten": "89c38901c5257716c6eddcfbbbe69606c61516d79ee77ae1cdd44363423a1387",
      "memoryModule": "wasm-cow:memory",
      "images": [
        "0@1048576+143360:3c13e1a8a90ad1ae7604378556a248c8d891d3dfe5461f21da7c3711b5e40b3d"
      ],
      "plans": "250877873e42d86db384c9ca85541bc38502381c52bba441bfbe1d172ff45bc7",
      "data": "60fc26e261d71d2e405e14e6a7a05865b41df4ff66209a9726d1e269018eb1b9",
      "reuse": null
    },
    "reuse": {
      "rewritten": "aca67f25a0ed7298351db4aafa4f04cba47c4962f06fcc660e30408aff52eae5",
      "memoryModule": "wasm-cow:memory",
      "images": [
        "0@1048576+143360:3c13e1a8a90ad1ae7604378556a248c8d891d3dfe5461f21da7c3711b5e40b3d"
      ],
      "plans": "250877873e42d86db384c9ca85541bc38502381c52bba441bfbe1d172ff45bc7",
      "data": "60fc26e261d71d2e405e14e6a7a05865b41df4ff66209a9726d1e269018eb1b9",
      "reuse": "enabled"
    },
    "snapshots": {
      "rewritten": "aca67f25a0ed7298351db4aafa4f04cba47c4962f06fcc660e30408aff52eae5",
      "memoryModule": "wasm-cow:memory",
      "images": [
        "0@1048576+143360:3c13e1a8a90ad1ae7604378556a248c8d891d3dfe5461f21da7c3711b5e40b3d"
      ],
      "plans": "250877873e42d86db384c9ca85541bc38502381c52bba441bfbe1d172ff45bc7",
      "data": "60fc26e261d71d2e405e14e6a7a05865b41df4ff66209a9726d1e269018eb1b9",
      "reuse": null
    },
    "copy": {
      "rewritten": "89c38901c5257716c6eddcfbbbe69606c61516d79ee77ae1cdd44363423a1387",
      "memoryModule": "wasm-cow:memory",
      "images": [
        "0@1048576+143360:3c13e1a8a90ad1ae7604378556a248c8d891d3dfe5461f21da7c3711b5e40b3d"
      ],
      "plans": "250877873e42d86db384c9ca85541bc38502381c52bba441bfbe1d172ff45bc7",
      "data": "60fc26e261d71d2e405e14e6a7a05865b41df4ff66209a9726d1e269018eb1b9",
      "reuse": null
    },
    "every-image": {
      "rewritten": "89c38901c5257716c6eddcfbbbe69606c61516d79ee77ae1cdd44363423a1387",
      "memoryModule": "wasm-cow:memory",
      "images": [
        "0@1048576+143360:3c13e1a8a90ad1ae7604378556a248c8d891d3dfe5461f21da7c3711b5e40b3d"
      ],
      "plans": "250877873e42d86db384c9ca85541bc38502381c52bba441bfbe1d172ff45bc7",
      "data": "60fc26e261d71d2e405e14e6a7a05865b41df4ff66209a9726d1e269018eb1b9",
      "reuse": null
    }
  },
  "resvg": {
    "native": {
      "rewritten": "46d92f3e8bc782ed106b09c8f2325adf77203c5623267ce28f3c175f5354171f",
      "memoryModule": "wasm-cow:memory",
      "images": [
        "0@1048576+458752:191913f70e29b8ebfa470f7aedfc86932bb791572f27f2441243b25d10cc63f5"
      ],
      "plans": "a4e7c13f4ceeca5acb4b3cf7f5cea273ec54e4d07c1096f10e4d00652d47615b",
      "data": "babbd0607d86d4ac5b67403bc82b925ef9dfb00d7950621caf73e98555639c09",
      "reuse": null
    },
    "reuse": {
      "rewritten": "240a354061e593c7c87a39da9cfa8c833d386b580b6ead5a169fd5e54fdfb753",
      "memoryModule": "wasm-cow:memory",
      "images": [
        "0@1048576+458752:191913f70e29b8ebfa470f7aedfc86932bb791572f27f2441243b25d10cc63f5"
      ],
      "plans": "a4e7c13f4ceeca5acb4b3cf7f5cea273ec54e4d07c1096f10e4d00652d47615b",
      "data": "babbd0607d86d4ac5b67403bc82b925ef9dfb00d7950621caf73e98555639c09",
      "reuse": "enabled"
    },
    "snapshots": {
      "rewritten": "240a354061e593c7c87a39da9cfa8c833d386b580b6ead5a169fd5e54fdfb753",
      "memoryModule": "wasm-cow:memory",
      "images": [
        "0@1048576+458752:191913f70e29b8ebfa470f7aedfc86932bb791572f27f2441243b25d10cc63f5"
      ],
      "plans": "a4e7c13f4ceeca5acb4b3cf7f5cea273ec54e4d07c1096f10e4d00652d47615b",
      "data": "babbd0607d86d4ac5b67403bc82b925ef9dfb00d7950621caf73e98555639c09",
      "reuse": null
    },
    "copy": {
      "rewritten": "46d92f3e8bc782ed106b09c8f2325adf77203c5623267ce28f3c175f5354171f",
      "memoryModule": "wasm-cow:memory",
      "images": [
        "0@1048576+458752:191913f70e29b8ebfa470f7aedfc86932bb791572f27f2441243b25d10cc63f5"
      ],
      "plans": "a4e7c13f4ceeca5acb4b3cf7f5cea273ec54e4d07c1096f10e4d00652d47615b",
      "data": "babbd0607d86d4ac5b67403bc82b925ef9dfb00d7950621caf73e98555639c09",
      "reuse": null
    },
    "every-image": {
      "rewritten": "46d92f3e8bc782ed106b09c8f2325adf77203c5623267ce28f3c175f5354171f",
      "memoryModule": "wasm-cow:memory",
      "images": [
        "0@1048576+458752:191913f70e29b8ebfa470f7aedfc86932bb791572f27f2441243b25d10cc63f5"
      ],
      "plans": "a4e7c13f4ceeca5acb4b3cf7f5cea273ec54e4d07c1096f10e4d00652d47615b",
      "data": "babbd0607d86d4ac5b67403bc82b925ef9dfb00d7950621caf73e98555639c09",
      "reuse": null
    }
  },
  "pyodide": {
    "native": {
      "rewritten": "0848b03e40c04fc13cff67808ee8bc0c089cbe297049ddad6691b4df3f802ad5",
      "memoryModule": "wasm-cow:memory",
      "images": [
        "0@0+3821568:c1216105843f13db625d4830e996475c2280daa417feeba9cc06634cdb5a7e98"
      ],
      "plans": "8e2ec6714589ce987dd2d41faef796e22e8a67f55e8a997f9db142ac2ed812b2",
      "data": "4a0a9af4335d8b8ebb09c18285e48f6d291c24a4335a443ae952d52a274e333a",
      "reuse": null
    },
    "reuse": {
      "rewritten": "5a1c0d78168e9928ab2f9bbe66d2fd0eaa00d243f416accdad416608527c804e",
      "memoryModule": "wasm-cow:memory",
      "images": [
        "0@0+3821568:c1216105843f13db625d4830e996475c2280daa417feeba9cc06634cdb5a7e98"
      ],
      "plans": "8e2ec6714589ce987dd2d41faef796e22e8a67f55e8a997f9db142ac2ed812b2",
      "data": "4a0a9af4335d8b8ebb09c18285e48f6d291c24a4335a443ae952d52a274e333a",
      "reuse": "enabled"
    },
    "snapshots": {
      "rewritten": "6859031613f810f452db99181fcbe2f821cb541dbaf1cfa62ef33f4eaa7919ae",
      "memoryModule": "wasm-cow:memory",
      "images": [
        "0@0+3821568:c1216105843f13db625d4830e996475c2280daa417feeba9cc06634cdb5a7e98"
      ],
      "plans": "8e2ec6714589ce987dd2d41faef796e22e8a67f55e8a997f9db142ac2ed812b2",
      "data": "4a0a9af4335d8b8ebb09c18285e48f6d291c24a4335a443ae952d52a274e333a",
      "reuse": null
    },
    "copy": {
      "rewritten": "0848b03e40c04fc13cff67808ee8bc0c089cbe297049ddad6691b4df3f802ad5",
      "memoryModule": "wasm-cow:memory",
      "images": [
        "0@0+3821568:c1216105843f13db625d4830e996475c2280daa417feeba9cc06634cdb5a7e98"
      ],
      "plans": "8e2ec6714589ce987dd2d41faef796e22e8a67f55e8a997f9db142ac2ed812b2",
      "data": "4a0a9af4335d8b8ebb09c18285e48f6d291c24a4335a443ae952d52a274e333a",
      "reuse": null
    },
    "every-image": {
      "rewritten": "0848b03e40c04fc13cff67808ee8bc0c089cbe297049ddad6691b4df3f802ad5",
      "memoryModule": "wasm-cow:memory",
      "images": [
        "0@0+3821568:c1216105843f13db625d4830e996475c2280daa417feeba9cc06634cdb5a7e98"
      ],
      "plans": "8e2ec6714589ce987dd2d41faef796e22e8a67f55e8a997f9db142ac2ed812b2",
      "data": "4a0a9af4335d8b8ebb09c18285e48f6d291c24a4335a443ae952d52a274e333a",
      "reuse": null
    }
  },
  "oniguruma": {
    "native": {
      "rewritten": "ffae15ce4cc52b64645ddd8bb21cd617138b1b8283f6a8cf27b04351c625309e",
      "memoryModule": "wasm-cow:memory",
      "images": [
        "0@0+307200:cd151e90228a9b83a6177fdd5ef46565a07a227ecf8255c26022a9de4cb8bba6"
      ],
      "plans": "8f47f18ab7e7c48802d88bfe193d7790bdbec367626bc7425a093b9255a431a2",
      "data": "7830289980196c64ddc1f08c7ed19d76e522a505357227036de1e2677be4d9bd",
      "reuse": null
    },
    "reuse": {
      "rewritten": "00a6187ba6c01c60b2caf44c3ef8cb46cf1cf7b302ae27b2f446b6decd03a559",
      "memoryModule": "wasm-cow:memory",
      "images": [
        "0@0+307200:cd151e90228a9b83a6177fdd5ef46565a07a227ecf8255c26022a9de4cb8bba6"
      ],
      "plans": "8f47f18ab7e7c48802d88bfe193d7790bdbec367626bc7425a093b9255a431a2",
      "data": "7830289980196c64ddc1f08c7ed19d76e522a505357227036de1e2677be4d9bd",
      "reuse": "enabled"
    },
    "snapshots": {
      "rewritten": "00a6187ba6c01c60b2caf44c3ef8cb46cf1cf7b302ae27b2f446b6decd03a559",
      "memoryModule": "wasm-cow:memory",
      "images": [
        "0@0+307200:cd151e90228a9b83a6177fdd5ef46565a07a227ecf8255c26022a9de4cb8bba6"
      ],
      "plans": "8f47f18ab7e7c48802d88bfe193d7790bdbec367626bc7425a093b9255a431a2",
      "data": "7830289980196c64ddc1f08c7ed19d76e522a505357227036de1e2677be4d9bd",
      "reuse": null
    },
    "copy": {
      "rewritten": "ffae15ce4cc52b64645ddd8bb21cd617138b1b8283f6a8cf27b04351c625309e",
      "memoryModule": "wasm-cow:memory",
      "images": [
        "0@0+307200:cd151e90228a9b83a6177fdd5ef46565a07a227ecf8255c26022a9de4cb8bba6"
      ],
      "plans": "8f47f18ab7e7c48802d88bfe193d7790bdbec367626bc7425a093b9255a431a2",
      "data": "7830289980196c64ddc1f08c7ed19d76e522a505357227036de1e2677be4d9bd",
      "reuse": null
    },
    "every-image": {
      "rewritten": "ffae15ce4cc52b64645ddd8bb21cd617138b1b8283f6a8cf27b04351c625309e",
      "memoryModule": "wasm-cow:memory",
      "images": [
        "0@0+307200:cd151e90228a9b83a6177fdd5ef46565a07a227ecf8255c26022a9de4cb8bba6"
      ],
      "plans": "8f47f18ab7e7c48802d88bfe193d7790bdbec367626bc7425a093b9255a431a2",
      "data": "7830289980196c64ddc1f08c7ed19d76e522a505357227036de1e2677be4d9bd",
      "reuse": null
    }
  }
};

for (const [name, path] of Object.entries(MODULES)) {
  test(`planning ${name} gives the recorded rewrite, images and plans`, () => {
    const bytes = new Uint8Array(readFileSync(`${root}node_modules/${path}`));
    for (const [variantName, variant] of Object.entries(VARIANTS)) {
      assert.deepEqual(digestPlan(bytes, variant), EXPECTED[name]?.[variantName], `${name}, ${variantName}`);
    }
  });
}
