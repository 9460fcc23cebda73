/** Injection tokens for infrastructure that main.ts builds before Nest starts. */
export const NATS = Symbol('NATS');
export const JETSTREAM = Symbol('JETSTREAM');
export const POLICIES_KV = Symbol('POLICIES_KV');
export const LOGGER = Symbol('LOGGER');
