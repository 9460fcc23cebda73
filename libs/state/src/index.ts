export * from './health.store';
export * from './keys';
export * from './redis';
