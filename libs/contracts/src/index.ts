export { buildAsyncApi, renderAsyncApiYaml } from './asyncapi';
export * from './duration';
export * from './errors';
export * from './events';
export * from './fixtures';
export * from './names';
export * from './parse';
export * from './policy';
export * from './service.schema';
