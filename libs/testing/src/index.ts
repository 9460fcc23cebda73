export * from './mesh';
export * from './processes';
