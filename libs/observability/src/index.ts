export * from './event-loop';
export * from './logger';
export * from './shutdown';
export * from './telemetry';
