export * from './logger';
export * from './shutdown';
export * from './telemetry';
