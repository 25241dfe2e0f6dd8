import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { UsageError, command, editDistance, helpText, parseCommand, suggest } from '../../cli/args.ts';

const spec = command({
  name: 'demo',
  summary: 'a demo command',
  positionals: [{ name: 'IMAGE', help: 'an image', optional: true }],
  options: {
    steps: { kind: 'int', min: 1, help: 'length of the run', placeholder: 'N' },
    batch: { kind: 'int', min: 1, default: 64, help: 'images per step' },
    threshold: { kind: 'number', min: 0, max: 1, default: 0.6, help: 'mass kept' },
    temperature: { kind: 'number', min: 0, exclusiveMin: true, default: 0.07, help: 'softmax temperature' },
    ep: { kind: 'choice', choices: ['cpu', 'cuda', 'webgpu'], default: 'cpu', help: 'execution provider' },
    'nb-knn': { kind: 'ints', min: 1, default: [10, 20], help: 'k values' },
    set: { kind: 'repeated', help: 'key=value' },
    out: { kind: 'string', short: 'o', help: 'run folder', placeholder: 'DIR' },
    json: { kind: 'flag', help: 'print JSON' },
  },
});

function usageError(argv: string[]): string {
  try {
    parseCommand(spec, argv);
  } catch (e) {
    assert.instance(e, UsageError);
    assert.is((e as UsageError).exitCode, 2);
    return (e as Error).message;
  }
  throw new Error(`expected a usage error for ${argv.join(' ')}`);
}

function parsed(argv: string[]) {
  const r = parseCommand(spec, argv);
  if (r === 'help') throw new Error('unexpected help');
  return r;
}

test('defaults, explicit values, both spellings, and which flags were given', () => {
  const d = parsed([]);
  assert.equal(d.options, { batch: 64, threshold: 0.6, temperature: 0.07, ep: 'cpu', 'nb-knn': [10, 20], set: [], json: false });
  assert.is(d.given.size, 0);
  const r = parsed(['img.png', '--steps', '5', '--batch=32', '-o', 'runs/x', '--set', 'a=1', '--set', 'b=2', '--json', '--nb-knn', '10,20,100,200', '--ep', 'cuda']);
  assert.equal(r.positionals, ['img.png']);
  assert.is(r.options.steps, 5);
  assert.is(r.options.batch, 32);
  assert.is(r.options.out, 'runs/x');
  assert.equal(r.options.set, ['a=1', 'b=2']);
  assert.equal(r.options['nb-knn'], [10, 20, 100, 200]);
  assert.is(r.options.json, true);
  assert.is(r.options.ep, 'cuda');
  assert.equal([...r.given].sort(), ['batch', 'ep', 'json', 'nb-knn', 'out', 'set', 'steps']);
});

test('values are validated where parsed, naming the flag', () => {
  assert.match(usageError(['--steps', 'abc']), '--steps must be an integer >= 1, got "abc"');
  assert.match(usageError(['--steps', '-5']), '--steps must be an integer >= 1, got "-5"');
  assert.match(usageError(['--steps', '1.5']), '--steps must be an integer >= 1, got "1.5"');
  assert.match(usageError(['--threshold', 'abc']), '--threshold must be a number from 0 to 1, got "abc"');
  assert.match(usageError(['--threshold', '1.5']), '--threshold must be a number from 0 to 1');
  assert.match(usageError(['--temperature', '0']), '--temperature must be a number > 0, got "0"');
  assert.match(usageError(['--ep', 'cdua']), '--ep must be one of cpu, cuda, webgpu, got "cdua" (did you mean cuda?)');
  assert.match(usageError(['--nb-knn', '10,x']), '--nb-knn must be a comma-separated list of integers >= 1');
  assert.match(usageError(['--steps']), '--steps needs a value (N)');
  assert.match(usageError(['--steps', '--batch', '3']), '--steps needs a value');
  assert.match(usageError(['--json=yes']), '--json takes no value');
  assert.match(usageError(['--steps', '3', '--steps', '4']), '--steps is given twice');
});

test('unknown flags get a suggestion; extra positionals are named', () => {
  assert.match(usageError(['--step', '3']), 'unknown option --step (did you mean --steps?)');
  assert.match(usageError(['--temprature', '3']), 'did you mean --temperature?');
  assert.is(usageError(['--zzz']), 'unknown option --zzz');
  assert.match(usageError(['-x']), 'unknown option -x');
  assert.match(usageError(['a.png', 'b.png']), 'unexpected argument "b.png"');
});

test('-h and --help win anywhere before --, and the help text shows defaults and choices', () => {
  assert.is(parseCommand(spec, ['--steps', 'abc', '-h']), 'help');
  assert.is(parseCommand(spec, ['--help']), 'help');
  assert.is.not(parseCommand(spec, ['--', '-h']), 'help');
  const h = helpText(spec);
  assert.match(h, 'usage: dino demo [IMAGE] [options]');
  assert.match(h, /--batch N\s+images per step \(default: 64\)/);
  assert.match(h, /--ep cpu\|cuda\|webgpu\s+execution provider \(default: cpu\)/);
  assert.match(h, /--nb-knn VALUE\s+k values \(default: 10,20\)/);
  assert.match(h, /-o, --out DIR\s+run folder/);
  assert.match(h, /-h, --help\s+show this help/);
});

test('negative numbers are values, not flags', () => {
  const s = command({ name: 'n', summary: '', options: { shift: { kind: 'number', help: '' } } });
  const r = parseCommand(s, ['--shift', '-0.5']);
  assert.equal(r === 'help' ? 'help' : r.options.shift, -0.5);
});

test('suggestions: edit distance and unique prefixes', () => {
  assert.is(editDistance('kitten', 'sitting'), 3);
  assert.is(editDistance('cdua', 'cuda'), 1);
  assert.is(suggest('resum', ['resume', 'recompute']), 'resume');
  assert.is(suggest('tran', ['train', 'export', 'knn']), 'train');
  assert.is(suggest('qqqq', ['train', 'export']), undefined);
});

test.run();
