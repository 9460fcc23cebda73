export * from './confirmed-publisher';
export * from './connection';
export * from './consumer';
export * from './dead-letter';
export * from './last-values';
export * from './provision';
export * from './publish';
export * from './trace';
