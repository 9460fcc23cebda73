export * from './health.store';
export * from './keys';
export * from './rate-limit.store';
export * from './redis';
