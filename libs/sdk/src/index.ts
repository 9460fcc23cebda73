export * from './mesh-manager';
export * from './workload-csr';
