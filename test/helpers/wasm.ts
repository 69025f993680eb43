export * from '../../src/bench/builder.js';
