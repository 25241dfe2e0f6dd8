// The pickle VM on plain Python pickles (test/fixtures/io/values_protocol{2,4}.pkl, written by
// tools/make_pth_fixtures.py from python_values()); expected values spelled out here.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { PickleError, PyGlobal, PyObject, unpickle } from '../../../runtime/io/pickle.ts';

const FIXTURES = path.join(path.dirname(fileURLToPath(import.meta.url)), '../../fixtures/io');

function checkValues(value: unknown, protocol: number): void {
  const where = `protocol ${protocol}`;
  assert.ok(value instanceof Map, where);
  const v = value as Map<unknown, unknown>;
  assert.equal(
    [...v.keys()],
    ['ints', 'floats', 'text', 'long_text', 'bytes', 'set', 'frozenset', 'tuple', 'nested', 'shared', 'ns', 'ordered'],
  );
  assert.equal(v.get('ints'), [0, 255, 256, 65535, 65536, -1, 2 ** 31 - 1, -(2 ** 31), 2n ** 53n, 2n ** 63n, -(2n ** 100n)], `${where} ints`);
  const floats = v.get('floats') as number[];
  assert.equal(floats, [1.5, -0, 1e300, Infinity]);
  assert.ok(Object.is(floats[1], -0), 'negative zero kept');
  assert.is(v.get('text'), 'h\u00e9llo \u2603');
  assert.is(v.get('long_text'), 'x'.repeat(300));
  assert.equal(v.get('bytes'), new Uint8Array([0, 0xff, 0x10]), `${where} bytes`);
  assert.equal(v.get('set'), new Set([1, 2]), `${where} set`);
  assert.equal(v.get('frozenset'), new Set([3]), `${where} frozenset`);
  assert.equal(v.get('tuple'), [1, [2, 3], []]);
  const nested = v.get('nested') as Map<unknown, unknown>;
  assert.equal(nested.get('a'), [null, true, false]);
  assert.is(nested.get(5), 'int key', 'int dict keys stay numbers');
  const shared = v.get('shared') as unknown[][];
  assert.equal(shared[0], [7, 'seven']);
  assert.ok(shared[0] === shared[1], `${where}: the memo keeps shared references shared`);
  const ns = v.get('ns');
  assert.ok(ns instanceof PyObject, `${where} Namespace is an opaque object`);
  assert.is((ns as PyObject).className, 'argparse.Namespace');
  assert.is((ns as PyObject).attribute('x'), 1);
  assert.is((ns as PyObject).attribute('name'), 'n');
  assert.equal([...(v.get('ordered') as Map<string, number>)], [['z', 1], ['a', 2]], 'OrderedDict keeps its order');
}

for (const protocol of [2, 4]) {
  test(`protocol ${protocol} pickle of Python values`, () => {
    const bytes = new Uint8Array(fs.readFileSync(path.join(FIXTURES, `values_protocol${protocol}.pkl`)));
    checkValues(unpickle(bytes), protocol);
  });
}

test('hooks: REDUCE goes to call(), BINPERSID to persistentLoad()', () => {
  // pickle.dumps of `mod.f(1, 'a')` by hand, protocol 2, plus a persistent id.
  const bytes = Uint8Array.from([
    0x80, 0x02, // PROTO 2
    0x28, // MARK
    0x63, ...new TextEncoder().encode('mod\nf\n'), // GLOBAL mod.f
    0x4b, 1, 0x8c, 1, 0x61, 0x86, // BININT1 1, SHORT_BINUNICODE 'a', TUPLE2
    0x52, // REDUCE
    0x8c, 3, 0x70, 0x69, 0x64, 0x51, // SHORT_BINUNICODE 'pid', BINPERSID
    0x63, ...new TextEncoder().encode('unknown\nThing\n'), 0x29, 0x52, // unknown.Thing() -> opaque
    0x6c, // LIST
    0x2e, // STOP
  ]);
  const calls: string[] = [];
  const result = unpickle(bytes, {
    call: (callable: PyGlobal, args: unknown[]) => {
      calls.push(`${callable.qualifiedName}(${JSON.stringify(args)})`);
      return callable.name === 'f' ? 'called' : undefined;
    },
    persistentLoad: (pid) => `loaded:${String(pid)}`,
  }) as unknown[];
  assert.equal(calls, ['mod.f([1,"a"])', 'unknown.Thing([])']);
  assert.is(result[0], 'called');
  assert.is(result[1], 'loaded:pid');
  assert.ok(result[2] instanceof PyObject && (result[2] as PyObject).className === 'unknown.Thing');
});

test('malformed pickles throw PickleError saying where', () => {
  const cases: Array<[number[], RegExp]> = [
    [[0x80, 0x02, 0x58, 10, 0, 0, 0, 0x61], /ends at byte 8, inside the instruction that starts at byte 2/],
    [[0x80, 0x02, 0xfe], /unsupported pickle opcode 0xfe at byte 2/],
    [[0x80, 0x02, 0x2e], /stack is empty/],
    [[0x80, 0x02, 0x68, 9, 0x2e], /memo entry 9 is read at byte \d+ before it is written/],
    [[0x80, 0x02, 0x74, 0x2e], /needs a MARK that was never set/],
    [[0x80, 0x02, 0x4e, 0x51, 0x2e], /persistent ids.*no loader/],
  ];
  for (const [bytes, pattern] of cases) {
    assert.throws(() => unpickle(Uint8Array.from(bytes)), (e: Error) => e instanceof PickleError && pattern.test(e.message));
  }
});

test.run();
