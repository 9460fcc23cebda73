// NestJS transport entry (`@novamesh/bus/nest`), kept apart from the client entry so that SDK
// users do not load NestJS.
export * from './jetstream.server';
export * from './nest-logger';
