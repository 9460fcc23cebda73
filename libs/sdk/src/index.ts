export { tlsOption } from '@novamesh/bus';
export * from './mesh-manager';
export * from './workload-csr';
