export * from './logs';
export * from './mesh';
export * from './processes';
