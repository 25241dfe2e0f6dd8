/**
 * Command-line parsing for `dino <command>`: each command declares its options once (kind, default, help), and
 * this module derives the parser, the validation and the `--help` text from that declaration.
 *
 * Conventions: `--name value` and `--name=value`; `-h`/`--help` on every command; values are checked where they
 * are parsed (integers, ranges, choices); a usage mistake is a `UsageError` (exit code 2) that names the flag and,
 * for a misspelt one, suggests the nearest. Flags a user gave explicitly are reported in `given`, so a command can
 * tell a default from a choice (e.g. which flags a resumed run may change).
 */

interface BaseOption {
  /** One line of help; the default is appended to it in `--help`. */
  readonly help: string;
  /** Name of the value in the help text, e.g. `N` or `DIR`. */
  readonly placeholder?: string;
  /** A one-letter alias, e.g. `o` for `-o`. */
  readonly short?: string;
}
export interface FlagOption extends BaseOption { readonly kind: 'flag' }
export interface StringOption extends BaseOption {
  readonly kind: 'string';
  readonly default?: string;
  /** The flag may stand without a value (followed by another flag or nothing): it then parses as ''. */
  readonly optionalValue?: boolean;
}
export interface IntOption extends BaseOption {
  readonly kind: 'int';
  readonly default?: number;
  readonly min?: number;
  readonly max?: number;
}
export interface NumberOption extends BaseOption {
  readonly kind: 'number';
  readonly default?: number;
  readonly min?: number;
  readonly max?: number;
  /** The value must be above `min` rather than at least `min` (e.g. a temperature). */
  readonly exclusiveMin?: boolean;
}
export interface ChoiceOption<C extends string = string> extends BaseOption {
  readonly kind: 'choice';
  readonly choices: readonly C[];
  readonly default?: C;
}
/** Comma-separated integers, e.g. `--nb-knn 10,20,100,200`. */
export interface IntListOption extends BaseOption {
  readonly kind: 'ints';
  readonly default?: readonly number[];
  readonly min?: number;
}
/**
 * A fixed count of numbers, as separate arguments (`--global-crops-scale 0.4 1`, main_dino.py's `nargs='+'`) or
 * comma-separated (`0.4,1`).
 */
export interface NumbersOption extends BaseOption {
  readonly kind: 'numbers';
  readonly count: number;
}
/** A string option that may be given several times, e.g. `--set a=1 --set b=2`. */
export interface RepeatedOption extends BaseOption { readonly kind: 'repeated' }

export type OptionSpec = FlagOption | StringOption | IntOption | NumberOption | ChoiceOption | IntListOption | NumbersOption | RepeatedOption;
export type OptionSpecs = Readonly<Record<string, OptionSpec>>;

type ValueOf<O extends OptionSpec> = O extends FlagOption ? boolean
  : O extends IntOption | NumberOption ? number
  : O extends ChoiceOption<infer C> ? C
  : O extends IntListOption | NumbersOption ? readonly number[]
  : O extends RepeatedOption ? readonly string[]
  : string;
type HasDefault<O> = O extends FlagOption | RepeatedOption ? true : O extends { readonly default: unknown } ? true : false;

/** Parsed values: options with a default (and flags, lists) are always present; the others may be undefined. */
export type ParsedOptions<S extends OptionSpecs> = {
  readonly [K in keyof S]: HasDefault<S[K]> extends true ? ValueOf<S[K]> : ValueOf<S[K]> | undefined;
};

export interface CommandSpec<S extends OptionSpecs> {
  /** `dino <name>`; subcommands use a path such as `setup cuda`. */
  readonly name: string;
  readonly summary: string;
  /** Positional arguments, e.g. `IMAGE`, shown in the usage line. */
  readonly positionals?: readonly { readonly name: string; readonly help: string; readonly optional?: boolean }[];
  readonly options: S;
  /** Extra paragraphs after the option table (examples, remarks). */
  readonly epilog?: string;
}

export interface Parsed<S extends OptionSpecs> {
  readonly options: ParsedOptions<S>;
  readonly positionals: readonly string[];
  /** Options given on the command line (not defaults). */
  readonly given: ReadonlySet<keyof S & string>;
}

/** A mistake in how a command was called: printed with the command's usage line, exit code 2. */
export class UsageError extends Error {
  readonly exitCode = 2;
  constructor(message: string, readonly command?: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/** Defines a command; the identity function, there so that `S` is inferred from the literal. */
export function command<const S extends OptionSpecs>(spec: CommandSpec<S>): CommandSpec<S> {
  return spec;
}

/** Edit distance counting a swap of two neighbours as one edit (typos such as `cdua`), for suggestions. */
export function editDistance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, d[i - 2]![j - 2]! + 1);
      d[i]![j] = v;
    }
  }
  return d[a.length]![b.length]!;
}

/** The candidate nearest to `word` if it is close enough to be a plausible typo (or a prefix of exactly one). */
export function suggest(word: string, candidates: readonly string[]): string | undefined {
  const prefixed = candidates.filter((c) => c.startsWith(word));
  if (word.length >= 2 && prefixed.length === 1) return prefixed[0];
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const c of candidates) {
    const d = editDistance(word, c);
    if (d < bestDistance) [best, bestDistance] = [c, d];
  }
  return bestDistance <= Math.max(1, Math.floor(word.length / 3)) ? best : undefined;
}

/** `did you mean ...?` for an unknown word, or an empty string. */
export function didYouMean(word: string, candidates: readonly string[], prefix = ''): string {
  const s = suggest(word, candidates);
  return s === undefined ? '' : ` (did you mean ${prefix}${s}?)`;
}

function parseValue(flag: string, spec: OptionSpec, raw: string, command: string): unknown {
  const fail = (what: string): never => {
    throw new UsageError(`${flag} must be ${what}, got "${raw}"`, command);
  };
  switch (spec.kind) {
    case 'string':
    case 'repeated':
      return raw;
    case 'flag':
      throw new Error('unreachable: flags take no value');
    case 'int': {
      if (!/^[+-]?\d+$/.test(raw.trim())) fail(rangeText('an integer', spec.min, spec.max));
      const n = Number(raw);
      if ((spec.min !== undefined && n < spec.min) || (spec.max !== undefined && n > spec.max)) fail(rangeText('an integer', spec.min, spec.max));
      return n;
    }
    case 'number': {
      const n = raw.trim() === '' ? NaN : Number(raw);
      const below = spec.min !== undefined && (spec.exclusiveMin ? n <= spec.min : n < spec.min);
      if (!Number.isFinite(n) || below || (spec.max !== undefined && n > spec.max)) {
        fail(rangeText('a number', spec.min, spec.max, spec.exclusiveMin));
      }
      return n;
    }
    case 'choice':
      if (!spec.choices.includes(raw)) {
        throw new UsageError(`${flag} must be one of ${spec.choices.join(', ')}, got "${raw}"${didYouMean(raw, spec.choices)}`, command);
      }
      return raw;
    case 'numbers': {
      const parts = raw.split(',').map((part) => part.trim());
      const numbers = parts.map((part) => (part === '' ? NaN : Number(part)));
      if (numbers.length !== spec.count || !numbers.every(Number.isFinite)) fail(`${spec.count} numbers (e.g. ${spec.count === 2 ? '0.4 1' : Array(spec.count).fill('0').join(' ')})`);
      return numbers;
    }
    case 'ints':
      return raw.split(',').map((part) => {
        const t = part.trim();
        const n = Number(t);
        if (!/^[+-]?\d+$/.test(t) || (spec.min !== undefined && n < spec.min)) {
          fail(`a comma-separated list of integers${spec.min !== undefined ? ` >= ${spec.min}` : ''}`);
        }
        return n;
      });
  }
}

function rangeText(what: string, min?: number, max?: number, exclusiveMin = false): string {
  if (min !== undefined && max !== undefined) return `${what} from ${min} to ${max}`;
  if (min !== undefined) return `${what} ${exclusiveMin ? '>' : '>='} ${min}`;
  if (max !== undefined) return `${what} <= ${max}`;
  return what;
}

/**
 * Parses `argv` for `spec`. Returns `'help'` when `-h`/`--help` is among the arguments (anywhere before `--`), so
 * a command prints its help even next to other mistakes. Throws `UsageError` for unknown flags, missing or bad
 * values and a wrong number of positionals.
 */
export function parseCommand<S extends OptionSpecs>(spec: CommandSpec<S>, argv: readonly string[]): Parsed<S> | 'help' {
  const cut = argv.indexOf('--');
  const flagsPart = cut >= 0 ? argv.slice(0, cut) : argv;
  if (flagsPart.includes('-h') || flagsPart.includes('--help')) return 'help';

  const names = Object.keys(spec.options);
  const shortToName = new Map<string, string>();
  for (const n of names) {
    const s = spec.options[n]!.short;
    if (s) shortToName.set(s, n);
  }
  const values: Record<string, unknown> = {};
  const given = new Set<string>();
  const positionals: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (i === cut) {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (!arg.startsWith('-') || arg === '-' || /^-\d/.test(arg)) {
      positionals.push(arg);
      continue;
    }
    let name: string;
    let inline: string | undefined;
    if (arg.startsWith('--')) {
      const eq = arg.indexOf('=');
      // DINO's scripts spell flags with underscores (--local_crops_number): the same options here.
      name = (eq >= 0 ? arg.slice(2, eq) : arg.slice(2)).replaceAll('_', '-');
      inline = eq >= 0 ? arg.slice(eq + 1) : undefined;
    } else {
      const n = shortToName.get(arg.slice(1));
      if (!n) throw new UsageError(`unknown option ${arg}`, spec.name);
      name = n;
    }
    const opt = spec.options[name];
    if (!opt) throw new UsageError(`unknown option --${name}${didYouMean(name, names, '--')}`, spec.name);
    const flag = `--${name}`;
    if (opt.kind === 'flag') {
      if (inline !== undefined) throw new UsageError(`${flag} takes no value, got "${inline}"`, spec.name);
      values[name] = true;
    } else {
      let raw = inline;
      if (raw === undefined) {
        const next = argv[i + 1];
        if (next === undefined || i + 1 === cut || (next.startsWith('--') && next.length > 2)) {
          if (opt.kind === 'string' && opt.optionalValue) {
            values[name] = '';
            given.add(name);
            continue;
          }
          throw new UsageError(`${flag} needs a value${opt.placeholder ? ` (${opt.placeholder})` : ''}`, spec.name);
        }
        raw = next;
        i++;
        // A `numbers` option's further values follow as their own arguments (main_dino.py's `nargs='+'`).
        if (opt.kind === 'numbers') {
          while (raw.split(',').length < opt.count && i + 1 < argv.length && i + 1 !== cut && /^[+-]?(\d|\.\d)/.test(argv[i + 1]!)) raw += ',' + argv[++i];
        }
      }
      const v = parseValue(flag, opt, raw, spec.name);
      if (opt.kind === 'repeated') values[name] = [...((values[name] as string[] | undefined) ?? []), v as string];
      else {
        if (given.has(name)) throw new UsageError(`${flag} is given twice`, spec.name);
        values[name] = v;
      }
    }
    given.add(name);
  }

  const allowed = spec.positionals ?? [];
  const required = allowed.filter((p) => !p.optional).length;
  if (positionals.length > allowed.length) {
    const extra = positionals[allowed.length]!;
    throw new UsageError(allowed.length ? `unexpected argument "${extra}"` : `"${extra}" is not an option of dino ${spec.name} (options start with --)`, spec.name);
  }
  if (positionals.length < required) throw new UsageError(`missing ${allowed[positionals.length]!.name}`, spec.name);

  for (const n of names) {
    if (n in values) continue;
    const opt = spec.options[n]!;
    if (opt.kind === 'flag') values[n] = false;
    else if (opt.kind === 'repeated') values[n] = [];
    else if ('default' in opt && opt.default !== undefined) values[n] = opt.default;
  }
  return { options: values as ParsedOptions<S>, positionals, given };
}

/** The usage line of a command, e.g. `usage: dino attention IMAGE [options]`. */
export function usageLine(spec: CommandSpec<OptionSpecs>): string {
  const pos = (spec.positionals ?? []).map((p) => (p.optional ? `[${p.name}]` : p.name));
  return `usage: dino ${[spec.name, ...pos].join(' ')}${Object.keys(spec.options).length ? ' [options]' : ''}`;
}

function defaultText(opt: OptionSpec): string {
  if (opt.kind === 'flag' || opt.kind === 'repeated' || !('default' in opt) || opt.default === undefined) return '';
  const d = Array.isArray(opt.default) ? opt.default.join(',') : String(opt.default);
  return ` (default: ${d})`;
}

/** The `--help` text: usage line, summary, positionals, options with their defaults and choices, epilog. */
export function helpText(spec: CommandSpec<OptionSpecs>): string {
  const rows: [string, string][] = [];
  for (const p of spec.positionals ?? []) rows.push([p.name, p.help]);
  for (const [name, opt] of Object.entries(spec.options)) {
    const short = opt.short ? `-${opt.short}, ` : '';
    const placeholder = opt.kind === 'flag' ? '' : ` ${opt.placeholder ?? (opt.kind === 'choice' ? opt.choices.join('|') : opt.kind === 'int' || opt.kind === 'number' ? 'N' : 'VALUE')}`;
    rows.push([`${short}--${name}${placeholder}`, opt.help + defaultText(opt)]);
  }
  rows.push(['-h, --help', 'show this help']);
  const width = Math.min(30, Math.max(...rows.map(([l]) => l.length)) + 2);
  const lines = rows.map(([l, r]) => (l.length + 2 > width ? `  ${l}\n  ${' '.repeat(width)}${r}` : `  ${l.padEnd(width)}${r}`));
  return [usageLine(spec), '', spec.summary, '', ...lines, ...(spec.epilog ? ['', spec.epilog.trimEnd()] : []), ''].join('\n');
}

/** A command: its declaration and what it does with the parsed command line. */
export interface Command<S extends OptionSpecs = OptionSpecs> {
  readonly spec: CommandSpec<S>;
  run(parsed: Parsed<S>): Promise<void>;
}

/** Declares a command; `S` is inferred from the option literal, so `run` sees typed values. */
export function defineCommand<const S extends OptionSpecs>(spec: CommandSpec<S>, run: (parsed: Parsed<S>) => Promise<void>): Command<S> {
  return { spec, run };
}

/** Parses `argv` for `cmd` and runs it, or prints its help. Usage mistakes throw `UsageError`. */
export async function runCommand<S extends OptionSpecs>(cmd: Command<S>, argv: readonly string[]): Promise<void> {
  const parsed = parseCommand(cmd.spec, argv);
  if (parsed === 'help') return void process.stdout.write(helpText(cmd.spec));
  await cmd.run(parsed);
}
