export * from './endpoint-set';
export * from './probe';
export * from './rendezvous';
export * from './service-record';
