export * from './mesh-manager';
