import type { Generation } from './generation.js';

/** The one reference a reload swaps. Stages read `current` once per query and keep it for the whole query. */
export class PolicyHolder {
  constructor(public current: Generation) {}
}
