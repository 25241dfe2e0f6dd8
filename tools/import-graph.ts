/**
 * The project's import structure, counted from the source: import cycles (strongly connected components of
 * more than one file) and imports that go from a lower room up to a higher one (docs/ARCHITECTURE.md,
 * "Rooms and arrows").
 *
 *   node --import tsx tools/import-graph.ts            # the working tree (tracked files)
 *   node --import tsx tools/import-graph.ts <commit>   # any commit, read with git (no checkout needed)
 *   node --import tsx tools/import-graph.ts --write-docs   # rewrite docs/ARCHITECTURE.md's import-graph block
 *   node --import tsx tools/import-graph.ts --check-docs   # exit 1 when that block is stale
 *
 * Read: relative `import ... from` / `export ... from` / `import '...'` statements at the top level, and
 * `import('...')` calls with a literal path, of tracked .ts files outside node_modules/ and test/. An import whose
 * bindings are all types is erased by tsc and tsx, and a dynamic import runs after loading, so neither can make a
 * load-order cycle: cycles are reported for static runtime imports, then those the other kinds add. Every kind
 * counts for the direction between rooms.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { posix } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * Room ranks: an import from a room to a higher rank is upward. exports/ has rooms of its own (export/ <
 * evaluation/ < apps/ < its index.ts); bench sits beside exports; tools are scripts.
 */
const RANK: Readonly<Record<string, number>> = {
  dsl: 0, models: 1, runtime: 2, 'exports/export': 3, 'exports/evaluation': 3.25, 'exports/apps': 3.5, exports: 3.75, bench: 3,
  bin: 4, cli: 4, tools: 4,
};
const ORDER = 'dsl < models < runtime < exports/export < exports/evaluation < exports/apps < exports/index.ts, bench beside exports < bin = cli = tools';

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

/** The room of a file: its top folder, or exports/<role> for a file in one of exports/' role folders. */
const roomOf = (file: string) => {
  const parts = file.split('/');
  return parts[0] === 'exports' && parts.length > 2 ? `exports/${parts[1]}` : parts[0]!;
};

/** The import structure of a commit, or of the working tree. */
export interface ImportGraph {
  readonly files: number;
  readonly imports: { readonly [K in Kind]: number };
  /** Cycles of static runtime imports (each a sorted list of files). */
  readonly loadCycles: readonly string[][];
  /** Further cycles that type-only or dynamic imports close. */
  readonly moreCycles: readonly string[][];
  readonly upward: readonly Edge[];
}

export function importGraph(rev?: string): ImportGraph {
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
  const loadCycles = cycles(files, edges.filter((e) => e.kind === 'static'));
  return {
    files: files.length,
    imports: { static: count('static'), 'type-only': count('type-only'), dynamic: count('dynamic') },
    loadCycles,
    moreCycles: cycles(files, edges).filter((c) => !loadCycles.some((r) => r.join() === c.join())),
    upward: edges.filter((e) => (RANK[roomOf(e.to)] ?? -1) > (RANK[roomOf(e.from)] ?? Infinity)),
  };
}

/** The report the script prints, under the title `what`. */
export function formatImportGraph(g: ImportGraph, what: string): string {
  const show = (sccs: readonly string[][]) => (sccs.length ? sccs.map((c) => `  ${c.join(' <-> ')}`).join('\n') : '  (none)');
  const total = g.imports.static + g.imports['type-only'] + g.imports.dynamic;
  return [
    `${what}: ${g.files} files, ${total} relative imports (${g.imports.static} static, ${g.imports['type-only']} type-only, ${g.imports.dynamic} dynamic)`,
    `import cycles (static runtime imports): ${g.loadCycles.length}`,
    show(g.loadCycles),
    `further cycles through type-only or dynamic imports (no load-order effect): ${g.moreCycles.length}`,
    show(g.moreCycles),
    `upward imports (${ORDER}): ${g.upward.length}`,
    g.upward.length ? g.upward.map((e) => `  ${e.from} -> ${e.to}${e.kind === 'static' ? '' : ` (${e.kind})`}`).join('\n') : '  (none)',
  ].join('\n');
}

/** The commit before the rooms were made (docs/ARCHITECTURE.md shows it beside the working tree). */
const BEFORE_ROOMS = 'eaab10f';
const DOCS = 'docs/ARCHITECTURE.md';
const BEGIN = '<!-- import-graph: generated by `node --import tsx tools/import-graph.ts --write-docs`; do not edit -->';
const END = '<!-- import-graph: end -->';

/** docs/ARCHITECTURE.md with its generated block replaced by this tree's report (and the one before the rooms). */
export function docsWithReport(docs: string): string {
  const at = docs.indexOf(BEGIN), end = docs.indexOf(END);
  if (at < 0 || end < at) throw new Error(`${DOCS} has no block between "${BEGIN}" and "${END}" to write the import graph into`);
  const block = ['```', formatImportGraph(importGraph(BEFORE_ROOMS), `before the rooms (${BEFORE_ROOMS})`), '',
    formatImportGraph(importGraph(), 'now'), '```'].join('\n');
  return `${docs.slice(0, at + BEGIN.length)}\n${block}\n${docs.slice(end)}`;
}

function main(): void {
  const arg = process.argv[2];
  if (arg === '--write-docs' || arg === '--check-docs') {
    const docs = readFileSync(DOCS, 'utf8');
    const next = docsWithReport(docs);
    if (arg === '--write-docs') writeFileSync(DOCS, next);
    else if (next !== docs) {
      console.error(`${DOCS}: the import-graph block is stale; run node --import tsx tools/import-graph.ts --write-docs`);
      process.exit(1);
    }
    return;
  }
  console.log(formatImportGraph(importGraph(arg), `import graph of ${arg ?? 'the working tree'}`));
}

if (process.argv[1] === fileURLToPath(import.meta.url)) main();
