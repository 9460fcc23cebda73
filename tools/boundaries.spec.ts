import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

// Module boundaries by Nx tag (package.json "nx.tags"): who may import whom. Nx's lint plugin
// would enforce these in ESLint; this test enforces them without it.
const ALLOWED: Record<string, string[]> = {
  'type:contracts': [],
  'type:util': ['type:contracts', 'type:util'],
  'type:domain': ['type:contracts', 'type:util'],
  'type:adapter': ['type:contracts', 'type:util', 'type:adapter'],
  'type:app': ['type:contracts', 'type:util', 'type:domain', 'type:adapter'],
};

const root = join(__dirname, '..');
const packages = ['libs', 'apps'].flatMap((dir) =>
  readdirSync(join(root, dir)).map((name) => {
    const pkg = JSON.parse(readFileSync(join(root, dir, name, 'package.json'), 'utf8'));
    return {
      dir: join(root, dir, name),
      name: pkg.name as string,
      tag: (pkg.nx?.tags?.[0] ?? '') as string,
      deps: Object.keys(pkg.dependencies ?? {}),
      devDeps: Object.keys(pkg.devDependencies ?? {}),
    };
  }),
);
const byName = new Map(packages.map((p) => [p.name, p]));

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    if (statSync(p).isDirectory()) return f === 'dist' || f === 'node_modules' ? [] : sources(p);
    return p.endsWith('.ts') && !/\.(spec|int-spec|e2e-spec)\.ts$/.test(p) ? [p] : [];
  });
}

describe('module boundaries', () => {
  for (const pkg of packages) {
    it(`${pkg.name} (${pkg.tag}) imports only what its tag allows, through public entries it declares`, () => {
      expect(Object.keys(ALLOWED)).toContain(pkg.tag);
      for (const file of sources(join(pkg.dir, 'src'))) {
        const text = readFileSync(file, 'utf8');
        for (const m of text.matchAll(/from '(@novamesh\/[^']+)'/g)) {
          const spec = m[1] as string;
          const [scope, name, ...deep] = spec.split('/');
          const target = byName.get(`${scope}/${name}`);
          const where = `${file.replace(root, '')} imports ${spec}`;
          expect(target, where).toBeDefined();
          expect(ALLOWED[pkg.tag], where).toContain(target?.tag);
          // Test helpers (`*.e2e-helper.ts`, not shipped) may also use development dependencies.
          const declared = file.endsWith('.e2e-helper.ts') ? [...pkg.deps, ...pkg.devDeps] : pkg.deps;
          expect(declared, `${where} without declaring the dependency`).toContain(target?.name);
          expect(deep.length === 0 || spec === '@novamesh/bus/nest', `${where}: deep import`).toBe(true);
        }
        expect(text, `${file}: relative import across package roots`).not.toMatch(/from '\.\.\/\.\.\//);
      }
    });
  }
});
