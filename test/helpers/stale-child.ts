/**
 * Worker thread for test/stale-references.test.ts: runs every stale-reference
 * scenario in every configuration it is given, posts the violations.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { SCENARIOS, type StaleConfig } from './stale.js';

const { configs } = workerData as { configs: StaleConfig[] };
const violations: string[] = [];
for (const config of configs) {
  for (const [name, scenario] of Object.entries(SCENARIOS)) {
    for (const v of await scenario(config)) violations.push(`${name} (${config.backend}, background ${config.backgroundReset}): ${v}`);
  }
}
parentPort!.postMessage(violations);
