import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

// Tests import libs by package name; point those names at the sources so no build is needed.
const root = fileURLToPath(new URL('.', import.meta.url));
const alias = [
  { find: '@novamesh/bus/nest', replacement: `${root}libs/bus/src/nest.ts` },
  ...readdirSync(`${root}libs`).map((lib) => ({ find: new RegExp(`^@novamesh/${lib}$`), replacement: `${root}libs/${lib}/src/index.ts` })),
];

export default defineConfig({
  resolve: { alias },
  test: {
    reporters: ['default'],
    projects: [
      {
        resolve: { alias },
        test: { name: 'unit', include: ['{libs,apps,tools}/**/*.spec.ts'], exclude: ['**/node_modules/**', '**/dist/**'] },
      },
      {
        resolve: { alias },
        test: {
          name: 'integration',
          include: ['{libs,apps,tools}/**/*.int-spec.ts'],
          exclude: ['**/node_modules/**', '**/dist/**'],
          testTimeout: 60_000,
          hookTimeout: 60_000,
        },
      },
      {
        resolve: { alias },
        test: {
          name: 'e2e',
          include: ['{libs,apps,tools}/**/*.e2e-spec.ts'],
          exclude: ['**/node_modules/**', '**/dist/**'],
          testTimeout: 180_000,
          hookTimeout: 120_000,
          fileParallelism: false,
        },
      },
    ],
  },
});
