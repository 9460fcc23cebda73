/** Injection tokens for infrastructure that main.ts builds before Nest starts. */
export const NATS = Symbol('NATS');
export const JETSTREAM = Symbol('JETSTREAM');
export const SERVICES_KV = Symbol('SERVICES_KV');
export const HEALTH_STORE = Symbol('HEALTH_STORE');
export const LOGGER = Symbol('LOGGER');
export const CONFIG = Symbol('CONFIG');
