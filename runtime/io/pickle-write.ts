// A pickle writer for exactly one shape of object: what torch.save pickles for a state dict,
// `OrderedDict[str, Tensor]`, at protocol 2 (torch's default).
//
// Only opcodes and globals that torch.load(..., weights_only=True) accepts are emitted: GLOBAL (not
// STACK_GLOBAL), BINUNICODE (not SHORT_BINUNICODE), BININT1/BININT2/BININT/LONG1, TUPLE/TUPLE1-3,
// EMPTY_TUPLE, MARK, REDUCE, BINPERSID, SETITEM(S), NEWFALSE, BINPUT/BINGET; globals
// `collections.OrderedDict`, `torch._utils._rebuild_tensor_v2` and the `torch.*Storage` classes.
// The memo is used as CPython's pickler uses it (every string, tuple, global and REDUCE result is put;
// a repeated string or global is fetched with BINGET), so the bytes match what torch.save writes.

export type TorchStorageType = 'FloatStorage' | 'DoubleStorage' | 'LongStorage' | 'IntStorage' | 'ByteStorage' | 'BoolStorage';

/** One tensor of the state dict: a contiguous view of a whole storage, written as `data/<storageKey>`. */
export type PickledTensor = {
  readonly name: string;
  readonly storageType: TorchStorageType;
  readonly storageKey: string;
  /** Elements in the storage. */
  readonly numel: number;
  readonly shape: readonly number[];
  readonly stride: readonly number[];
};

class Pickler {
  private readonly parts: number[] = [];
  private readonly memo = new Map<string, number>();
  private next = 0;

  bytes(...values: number[]): void {
    this.parts.push(...values);
  }

  private u32(value: number): void {
    this.bytes(value & 0xff, (value >>> 8) & 0xff, (value >>> 16) & 0xff, (value >>> 24) & 0xff);
  }

  /** BINPUT / LONG_BINPUT of the value on top of the stack; `key` lets later writes of it become BINGET. */
  put(key?: string): void {
    const index = this.next++;
    if (key !== undefined) this.memo.set(key, index);
    if (index < 256) this.bytes(0x71, index);
    else {
      this.bytes(0x72);
      this.u32(index);
    }
  }

  /** BINGET / LONG_BINGET when `key` was memoized; false otherwise. */
  private get(key: string): boolean {
    const index = this.memo.get(key);
    if (index === undefined) return false;
    if (index < 256) this.bytes(0x68, index);
    else {
      this.bytes(0x6a);
      this.u32(index);
    }
    return true;
  }

  global(module: string, name: string): void {
    const key = `global:${module}.${name}`;
    if (this.get(key)) return;
    this.bytes(0x63, ...new TextEncoder().encode(`${module}\n${name}\n`));
    this.put(key);
  }

  string(value: string): void {
    const key = `str:${value}`;
    if (this.get(key)) return;
    const utf8 = new TextEncoder().encode(value);
    this.bytes(0x58);
    this.u32(utf8.length);
    this.bytes(...utf8);
    this.put(key);
  }

  int(value: number): void {
    if (!Number.isSafeInteger(value)) throw new Error(`pickle: ${value} is not a safe integer`);
    if (value >= 0 && value < 0x100) this.bytes(0x4b, value);
    else if (value >= 0 && value < 0x10000) this.bytes(0x4d, value & 0xff, value >>> 8);
    else if (value >= -0x80000000 && value < 0x80000000) {
      this.bytes(0x4a);
      this.u32(value >>> 0);
    } else {
      // LONG1: little-endian two's complement, shortest form with a sign bit that reads back correctly.
      let big = BigInt(value);
      const out: number[] = [];
      for (;;) {
        const byte = Number(big & 0xffn);
        out.push(byte);
        big >>= 8n;
        if ((big === 0n && !(byte & 0x80)) || (big === -1n && byte & 0x80)) break;
      }
      this.bytes(0x8a, out.length, ...out);
    }
  }

  /** A tuple of already-emitted items: TUPLE1-3 for short ones, MARK ... TUPLE otherwise (as CPython does). */
  tuple(items: readonly (() => void)[]): void {
    if (items.length === 0) {
      this.bytes(0x29); // EMPTY_TUPLE; CPython does not memoize the empty tuple
      return;
    }
    if (items.length > 3) this.bytes(0x28);
    for (const item of items) item();
    this.bytes(items.length === 1 ? 0x85 : items.length === 2 ? 0x86 : items.length === 3 ? 0x87 : 0x74);
    this.put();
  }

  finish(): Uint8Array {
    this.bytes(0x2e); // STOP
    return Uint8Array.from(this.parts);
  }
}

/** The `data.pkl` of a torch.save'd `OrderedDict` of tensors, in the given order. */
export function pickleStateDict(tensors: readonly PickledTensor[]): Uint8Array {
  const p = new Pickler();
  p.bytes(0x80, 2); // PROTO 2
  // OrderedDict() as OrderedDict.__reduce__ gives it: class, empty args, then the items by SETITEMS.
  p.global('collections', 'OrderedDict');
  p.bytes(0x29, 0x52); // EMPTY_TUPLE, REDUCE
  p.put();
  // Items in batches of 1000 as CPython's pickler writes them: MARK ... SETITEMS, or SETITEM for a batch of one.
  for (let start = 0; start < tensors.length; start += 1000) {
    const batch = tensors.slice(start, start + 1000);
    if (batch.length > 1) p.bytes(0x28); // MARK
    for (const t of batch) {
      p.string(t.name);
      writeTensor(p, t);
    }
    p.bytes(batch.length > 1 ? 0x75 : 0x73); // SETITEMS / SETITEM
  }
  return p.finish();
}

/** `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad=False, backward_hooks=OrderedDict())`. */
function writeTensor(p: Pickler, t: PickledTensor): void {
  if (t.shape.length !== t.stride.length) throw new Error(`pickle: tensor "${t.name}" has ${t.shape.length} dims but ${t.stride.length} strides`);
  p.global('torch._utils', '_rebuild_tensor_v2');
  const ints = (values: readonly number[]) => values.map((v) => () => p.int(v));
  p.tuple([
    () => {
      // Persistent id ('storage', storage type, key, location, numel): torch.load reads data/<key> for it.
      p.tuple([
        () => p.string('storage'),
        () => p.global('torch', t.storageType),
        () => p.string(t.storageKey),
        () => p.string('cpu'),
        () => p.int(t.numel),
      ]);
      p.bytes(0x51); // BINPERSID
    },
    () => p.int(0), // storage offset
    () => p.tuple(ints(t.shape)),
    () => p.tuple(ints(t.stride)),
    () => p.bytes(0x89), // requires_grad False
    () => {
      p.global('collections', 'OrderedDict'); // backward hooks: an empty OrderedDict
      p.bytes(0x29, 0x52);
      p.put();
    },
  ]);
  p.bytes(0x52); // REDUCE
  p.put();
}
