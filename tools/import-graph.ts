/**
 * The project's import structure, counted from the source: import cycles (strongly connected components of
 * more than one file) and imports that go from a lower room up to a higher one (docs/ARCHITECTURE.md,
 * "Rooms and arrows").
 *
 *   node --import tsx tools/import-graph.ts            # the working tree (tracked files)
 *   node --import tsx tools/import-graph.ts <commit>   # any commit, read with git (no checkout needed)
 *
 * Read: relative `import ... from` / `export ... from` / `import '...'` statements at the top level, and
 * `import('...')` calls with a literal path, of tracked .ts files outside node_modules/ and test/. An import whose
 * bindings are all types is erased by tsc and tsx, and a dynamic import runs after loading, so neither can make a
 * load-order cycle: cycles are reported for static runtime imports, then those the other kinds add. Every kind
 * counts for the direction between rooms.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { posix } from 'node:path';

/** Room ranks: an import from a room to a higher rank is upward. exports and bench are peers; tools are scripts. */
const RANK: Readonly<Record<string, number>> = { dsl: 0, models: 1, runtime: 2, exports: 3, bench: 3, bin: 4, cli: 4, tools: 4 };
const ORDER = 'dsl < models < runtime < exports = bench < bin = cli = tools';

type Kind = 'static' | 'type-only' | 'dynamic';

interface Edge {
  readonly from: string;
  readonly to: string;
  readonly kind: Kind;
}

const git = (args: string[]) => execFileSync('git', args, { encoding: 'utf8', maxBuffer: 64 << 20 });

function sources(rev: string | undefined): Map<string, string> {
  // The working tree: tracked files plus new ones git does not ignore, as they are on disk.
  const names = (rev ? git(['ls-tree', '-r', '--name-only', rev]) : git(['ls-files', '--cached', '--others', '--exclude-standard'])).split('\n')
    .filter((f) => f.endsWith('.ts') && (rev !== undefined || existsSync(f)) && !f.startsWith('node_modules/') && !f.startsWith('test/') && !f.includes('/node_modules/'));
  return new Map(names.map((f) => [f, rev ? git(['show', `${rev}:${f}`]) : readFileSync(f, 'utf8')]));
}

/** Top-level static imports: `from` clauses at the start of a line (block comments removed first). */
function importsOf(text: string): { spec: string; kind: Kind }[] {
  const code = text.replace(/\/\*[\s\S]*?\*\//g, '');
  const out: { spec: string; kind: Kind }[] = [];
  for (const m of code.matchAll(/^(import|export)\s+(type\s+)?([^;'"]*?)\s*from\s*['"]([^'"]+)['"]/gm)) {
    const clause = m[3]!;
    const named = /^\{([\s\S]*)\}$/.exec(clause.trim());
    const allTypes = !!named && named[1]!.split(',').map((s) => s.trim()).filter(Boolean).every((s) => s.startsWith('type '));
    out.push({ spec: m[4]!, kind: m[2] || allTypes ? 'type-only' : 'static' });
  }
  for (const m of code.matchAll(/^import\s+['"]([^'"]+)['"]/gm)) out.push({ spec: m[1]!, kind: 'static' });
  // `typeof import('...')` is a type; a bare `import('...')` loads the module when the code runs.
  for (const m of code.matchAll(/(typeof\s+)?\bimport\(\s*['"]([^'"]+)['"]\s*\)/g)) out.push({ spec: m[2]!, kind: m[1] ? 'type-only' : 'dynamic' });
  return out;
}

function resolve(from: string, spec: string, files: ReadonlySet<string>): string | undefined {
  if (!spec.startsWith('.')) return undefined;
  const base = posix.normalize(posix.join(posix.dirname(from), spec));
  return [base, base.replace(/\.js$/, '.ts'), `${base}.ts`, `${base}/index.ts`].find((f) => files.has(f));
}

/** Strongly connected components (Tarjan), only those of more than one file. */
function cycles(files: readonly string[], edges: readonly Edge[]): string[][] {
  const next = new Map<string, string[]>(files.map((f) => [f, []]));
  for (const e of edges) next.get(e.from)!.push(e.to);
  const index = new Map<string, number>(), low = new Map<string, number>(), onStack = new Set<string>();
  const stack: string[] = [], out: string[][] = [];
  let counter = 0;
  const visit = (v: string): void => {
    index.set(v, counter);
    low.set(v, counter++);
    stack.push(v);
    onStack.add(v);
    for (const w of next.get(v)!) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) === index.get(v)) {
      const scc: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        scc.push(w);
      } while (w !== v);
      if (scc.length > 1) out.push(scc.sort());
    }
  };
  for (const f of files) if (!index.has(f)) visit(f);
  return out.sort((a, b) => a[0]!.localeCompare(b[0]!));
}

const roomOf = (file: string) => file.split('/')[0]!;

function main(): void {
  const rev = process.argv[2];
  const src = sources(rev);
  const files = [...src.keys()].sort();
  const known = new Set(files);
  const edges: Edge[] = [];
  for (const f of files) {
    for (const { spec, kind } of importsOf(src.get(f)!)) {
      const to = resolve(f, spec, known);
      if (to && to !== f) edges.push({ from: f, to, kind });
    }
  }
  const count = (k: Kind) => edges.filter((e) => e.kind === k).length;
  const show = (sccs: string[][]) => (sccs.length ? sccs.map((c) => `  ${c.join(' <-> ')}`).join('\n') : '  (none)');
  const loadCycles = cycles(files, edges.filter((e) => e.kind === 'static'));
  const moreCycles = cycles(files, edges).filter((c) => !loadCycles.some((r) => r.join() === c.join()));
  const upward = edges.filter((e) => (RANK[roomOf(e.to)] ?? -1) > (RANK[roomOf(e.from)] ?? Infinity));

  console.log(`import graph of ${rev ?? 'the working tree'}: ${files.length} files, ${edges.length} relative imports`
    + ` (${count('static')} static, ${count('type-only')} type-only, ${count('dynamic')} dynamic)`);
  console.log(`import cycles (static runtime imports): ${loadCycles.length}`);
  console.log(show(loadCycles));
  console.log(`further cycles through type-only or dynamic imports (no load-order effect): ${moreCycles.length}`);
  console.log(show(moreCycles));
  console.log(`upward imports (${ORDER}): ${upward.length}`);
  console.log(upward.length ? upward.map((e) => `  ${e.from} -> ${e.to}${e.kind === 'static' ? '' : ` (${e.kind})`}`).join('\n') : '  (none)');
}

main();
