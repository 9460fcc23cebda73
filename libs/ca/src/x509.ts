// Internal: the one place that loads @peculiar/x509. Its dependency tsyringe throws at load time
// unless the Reflect metadata polyfill is already installed, so this side-effect import must stay first.
import 'reflect-metadata';
import { webcrypto as nodeWebcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';

/**
 * node:crypto's WebCrypto, passed explicitly to every @peculiar/x509 call so this library never
 * mutates that package's process-wide crypto provider (another user of it may have set its own).
 */
export const webcrypto = nodeWebcrypto;

export { x509 };
