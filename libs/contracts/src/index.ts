export { buildAsyncApi, renderAsyncApiYaml } from './asyncapi';
export * from './duration';
export * from './errors';
export * from './events';
export * from './names';
export * from './parse';
export * from './service.schema';
