/** Injection tokens for infrastructure that main.ts builds before Nest starts. */
export const NATS = Symbol('NATS');
export const JETSTREAM = Symbol('JETSTREAM');
export const JETSTREAM_MANAGER = Symbol('JETSTREAM_MANAGER');
export const CONFIG = Symbol('CONFIG');
export const LOGGER = Symbol('LOGGER');
