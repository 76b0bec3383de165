import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { test } from 'node:test';
import { repoRoot } from '../helpers/paths.js';

// A file that imports, directly or through others, a file that imports it back cannot be
// read, tested or replaced on its own (and ESM may hand it a binding not initialised yet).
// Type-only imports count too: they are the same knot in the design.

const libDir = join(repoRoot, 'lib');

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const file = join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(file);
    return entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts') ? [file] : [];
  });
}

/** The lib/ files a source file imports or re-exports, static or dynamic. */
function importsOf(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const specifiers = [...text.matchAll(/(?:^|[\s;}])(?:import|export)\s[^'"`;]*?\sfrom\s*['"]([^'"]+)['"]|(?:^|[\s;])import\s*['"]([^'"]+)['"]|\bimport\(\s*['"]([^'"]+)['"]\s*\)/gm)].map(
    (match) => match[1] ?? match[2] ?? match[3] ?? '',
  );
  return specifiers.filter((specifier) => specifier.startsWith('.')).map((specifier) => resolve(dirname(file), specifier.replace(/\.js$/, '.ts')));
}

/** Every import cycle, each as the files around it; found with Tarjan's strongly connected components. */
function findImportCycles(graph: Map<string, string[]>): string[][] {
  const index = new Map<string, number>();
  const lowLink = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const cycles: string[][] = [];
  const visit = (file: string): void => {
    index.set(file, index.size);
    lowLink.set(file, index.get(file)!);
    stack.push(file);
    onStack.add(file);
    for (const next of graph.get(file) ?? []) {
      if (!graph.has(next)) continue;
      if (!index.has(next)) {
        visit(next);
        lowLink.set(file, Math.min(lowLink.get(file)!, lowLink.get(next)!));
      } else if (onStack.has(next)) lowLink.set(file, Math.min(lowLink.get(file)!, index.get(next)!));
    }
    if (lowLink.get(file) !== index.get(file)) return;
    const component: string[] = [];
    let member: string;
    do {
      member = stack.pop()!;
      onStack.delete(member);
      component.push(member);
    } while (member !== file);
    if (component.length > 1 || (graph.get(file) ?? []).includes(file)) cycles.push(component.reverse());
  };
  for (const file of graph.keys()) if (!index.has(file)) visit(file);
  return cycles;
}

test('no file in lib/ imports, directly or through others, a file that imports it back', () => {
  const graph = new Map(sourceFiles(libDir).map((file) => [file, importsOf(file)]));
  const cycles = findImportCycles(graph).map((cycle) => cycle.map((file) => relative(repoRoot, file)).join(' -> '));
  assert.deepEqual(cycles, []);
});

test('the cycle check finds a loop through several files and one file importing itself', () => {
  const graph = new Map([
    ['a', ['b']],
    ['b', ['c']],
    ['c', ['a', 'd']],
    ['d', []],
    ['e', ['e']],
  ]);
  assert.deepEqual(findImportCycles(graph), [['a', 'b', 'c'], ['e']]);
});

test('the cycle check reads the imports of the sources, type-only ones included', () => {
  const graph = new Map(sourceFiles(libDir).map((file) => [relative(libDir, file), importsOf(file).map((imported) => relative(libDir, imported))]));
  assert.ok(graph.get('cli/run.ts')?.includes('daemon.ts'), 'cli/run.ts imports daemon.ts');
  assert.ok(graph.get('service.ts')?.includes('generation.ts'), 'a type import next to others is read');
  assert.ok([...graph.values()].every((imports) => imports.every((file) => graph.has(file))), 'every relative import names a file in lib/');
});
