// A small pickle virtual machine: enough of protocols 0-5 for what torch.save writes (protocol 2 by
// default) and for the Python values found in training checkpoints. It never runs Python code:
// globals are names, and the caller decides what calling one means (see PickleHooks).
//
// Python values become: None -> null, bool -> boolean, int -> number (bigint outside ±(2^53 - 1), where a double could not tell neighbours apart),
// float -> number, str -> string, bytes -> Uint8Array, list and tuple -> Array, dict -> Map,
// set -> Set, anything else -> PyObject (opaque, with its constructor args and state).

export class PyGlobal {
  constructor(
    readonly module: string,
    readonly name: string,
  ) {}
  get qualifiedName(): string {
    return `${this.module}.${this.name}`;
  }
}

/** An instance of a class this reader does not interpret (argparse.Namespace, optimizer classes, ...). */
export class PyObject {
  /** From BUILD: usually a Map of attributes (`__dict__`). */
  state: unknown = undefined;
  /** Items added by SETITEM(S) when the object is a dict subclass. */
  dictItems: Map<unknown, unknown> | undefined;
  /** Items added by APPEND(S) when the object is a list subclass. */
  listItems: unknown[] | undefined;
  constructor(
    readonly className: string,
    readonly args: unknown[],
  ) {}
  /** An attribute from the BUILD state, for objects pickled with a `__dict__` (argparse.Namespace). */
  attribute(name: string): unknown {
    const state = Array.isArray(this.state) ? this.state[0] : this.state;
    return state instanceof Map ? state.get(name) : undefined;
  }
}

export type PickleHooks = {
  /** Result of `callable(*args)` (REDUCE); `undefined` means "not handled": an opaque PyObject is made. */
  call?: (callable: PyGlobal, args: unknown[]) => unknown;
  /** Result of the persistent id `pid` (BINPERSID / PERSID). Required if the pickle uses them. */
  persistentLoad?: (pid: unknown) => unknown;
};

export class PickleError extends Error {}

function asInteger(value: bigint): number | bigint {
  return value >= BigInt(Number.MIN_SAFE_INTEGER) && value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : value;
}

/** Little-endian two's complement, as LONG1 / LONG4 store it. */
function decodeLong(bytes: Uint8Array): number | bigint {
  if (bytes.length === 0) return 0;
  let value = 0n;
  for (let i = bytes.length - 1; i >= 0; i--) value = (value << 8n) | BigInt(bytes[i]!);
  if (bytes[bytes.length - 1]! & 0x80) value -= 1n << BigInt(8 * bytes.length);
  return asInteger(value);
}

function construct(cls: unknown, args: unknown[]): unknown {
  if (cls instanceof PyGlobal) {
    switch (cls.qualifiedName) {
      case 'collections.OrderedDict':
      case 'builtins.dict':
      case '__builtin__.dict':
        return new Map();
      case 'builtins.list':
      case '__builtin__.list':
        return [];
      case 'builtins.set':
      case '__builtin__.set':
        return new Set();
    }
    return new PyObject(cls.qualifiedName, args);
  }
  return new PyObject(String(cls), args);
}

/** Built-in meanings of REDUCE for standard-library callables that checkpoints use. */
function callStandard(callable: PyGlobal, args: unknown[]): unknown {
  switch (callable.qualifiedName) {
    case 'collections.OrderedDict':
    case 'builtins.dict':
    case '__builtin__.dict': {
      const map = new Map<unknown, unknown>();
      const items = args[0];
      if (Array.isArray(items)) for (const pair of items) if (Array.isArray(pair)) map.set(pair[0], pair[1]);
      if (items instanceof Map) for (const [k, v] of items) map.set(k, v);
      return map;
    }
    case 'builtins.set':
    case 'builtins.frozenset':
    case '__builtin__.set':
    case '__builtin__.frozenset':
      return new Set(Array.isArray(args[0]) ? args[0] : []);
    case '_codecs.encode': {
      // Protocol 2 pickles bytes as _codecs.encode(text, 'latin1').
      const [text, encoding] = args;
      if (typeof text === 'string' && (encoding === 'latin1' || encoding === 'latin-1')) {
        return Uint8Array.from(text, (c) => c.charCodeAt(0));
      }
      if (typeof text === 'string') return new TextEncoder().encode(text);
      return undefined;
    }
    case 'builtins.bytearray':
    case '__builtin__.bytearray':
      return args[0] instanceof Uint8Array ? args[0] : undefined;
  }
  return undefined;
}

/** Runs the pickle in `bytes` and returns the object it builds. Throws PickleError when malformed. */
export function unpickle(bytes: Uint8Array, hooks: PickleHooks = {}): unknown {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const textDecoder = new TextDecoder('utf-8', { fatal: true });
  let pos = 0;
  let instructionStart = 0;
  let stack: unknown[] = [];
  const metastack: unknown[][] = [];
  const memo = new Map<number, unknown>();

  const need = (n: number): void => {
    if (pos + n > bytes.length) throw new PickleError(`the pickle ends at byte ${bytes.length}, inside the instruction that starts at byte ${instructionStart}`);
  };
  const u8 = (): number => { need(1); return bytes[pos++]!; };
  const u16 = (): number => { need(2); const v = view.getUint16(pos, true); pos += 2; return v; };
  const u32 = (): number => { need(4); const v = view.getUint32(pos, true); pos += 4; return v; };
  const i32 = (): number => { need(4); const v = view.getInt32(pos, true); pos += 4; return v; };
  const u64 = (): number => {
    need(8);
    const v = view.getBigUint64(pos, true);
    pos += 8;
    if (v > BigInt(bytes.length)) throw new PickleError(`a length of ${v} bytes at byte ${pos - 8} exceeds the pickle`);
    return Number(v);
  };
  const take = (n: number): Uint8Array => { need(n); const out = bytes.subarray(pos, pos + n); pos += n; return out; };
  const line = (): string => {
    const end = bytes.indexOf(0x0a, pos);
    if (end < 0) throw new PickleError(`a text argument at byte ${pos} has no end of line`);
    const text = new TextDecoder('latin1').decode(bytes.subarray(pos, end));
    pos = end + 1;
    return text;
  };
  const utf8 = (n: number): string => {
    try {
      return textDecoder.decode(take(n));
    } catch (error) {
      if (error instanceof PickleError) throw error;
      throw new PickleError(`a string at byte ${pos - n} is not valid UTF-8`);
    }
  };
  const pop = (): unknown => {
    if (stack.length === 0) throw new PickleError(`the stack is empty at byte ${pos - 1}`);
    return stack.pop();
  };
  const top = (): unknown => {
    if (stack.length === 0) throw new PickleError(`the stack is empty at byte ${pos - 1}`);
    return stack[stack.length - 1];
  };
  const popMark = (): unknown[] => {
    const items = stack;
    const previous = metastack.pop();
    if (previous === undefined) throw new PickleError(`an instruction at byte ${pos - 1} needs a MARK that was never set`);
    stack = previous;
    return items;
  };
  const memoGet = (index: number): unknown => {
    if (!memo.has(index)) throw new PickleError(`memo entry ${index} is read at byte ${pos} before it is written`);
    return memo.get(index);
  };
  const call = (callable: unknown, args: unknown[]): unknown => {
    if (!(callable instanceof PyGlobal)) return new PyObject(String(callable), args);
    const handled = hooks.call?.(callable, args);
    if (handled !== undefined) return handled;
    const standard = callStandard(callable, args);
    return standard !== undefined ? standard : new PyObject(callable.qualifiedName, args);
  };
  const setItems = (target: unknown, items: unknown[]): void => {
    if (items.length % 2 !== 0) throw new PickleError(`SETITEMS at byte ${pos - 1} has an odd number of items`);
    let map: Map<unknown, unknown>;
    if (target instanceof Map) map = target;
    else if (target instanceof PyObject) map = target.dictItems ??= new Map();
    else throw new PickleError(`SETITEM(S) at byte ${pos - 1} targets a ${typeof target}, not a dict`);
    for (let i = 0; i < items.length; i += 2) map.set(items[i], items[i + 1]);
  };
  const appendItems = (target: unknown, items: unknown[]): void => {
    if (Array.isArray(target)) target.push(...items);
    else if (target instanceof Set) for (const item of items) target.add(item);
    else if (target instanceof PyObject) (target.listItems ??= []).push(...items);
    else throw new PickleError(`APPEND(S) at byte ${pos - 1} targets a ${typeof target}, not a list`);
  };
  const persistentLoad = (pid: unknown): unknown => {
    if (hooks.persistentLoad === undefined) throw new PickleError('the pickle refers to external data (persistent ids) but no loader was given');
    return hooks.persistentLoad(pid);
  };

  for (;;) {
    const at = pos;
    instructionStart = pos;
    const opcode = u8();
    switch (opcode) {
      case 0x80: u8(); break; // PROTO
      case 0x95: u64(); break; // FRAME: framing is only a read-ahead hint
      case 0x2e: return pop(); // STOP
      case 0x28: metastack.push(stack); stack = []; break; // MARK
      case 0x30: pop(); break; // POP
      case 0x31: popMark(); break; // POP_MARK
      case 0x32: stack.push(top()); break; // DUP

      case 0x4e: stack.push(null); break; // NONE
      case 0x88: stack.push(true); break; // NEWTRUE
      case 0x89: stack.push(false); break; // NEWFALSE
      case 0x4a: stack.push(i32()); break; // BININT
      case 0x4b: stack.push(u8()); break; // BININT1
      case 0x4d: stack.push(u16()); break; // BININT2
      case 0x8a: stack.push(decodeLong(take(u8()))); break; // LONG1
      case 0x8b: { const n = i32(); if (n < 0) throw new PickleError(`LONG4 at byte ${at} has a negative length`); stack.push(decodeLong(take(n))); break; }
      case 0x47: { need(8); stack.push(view.getFloat64(pos, false)); pos += 8; break; } // BINFLOAT (big-endian)
      case 0x49: { // INT (text): also encodes bools in protocol 0
        const text = line();
        stack.push(text === '01' ? true : text === '00' ? false : asInteger(BigInt(text)));
        break;
      }
      case 0x4c: stack.push(asInteger(BigInt(line().replace(/L$/, '')))); break; // LONG (text)
      case 0x46: stack.push(Number.parseFloat(line())); break; // FLOAT (text)

      case 0x58: stack.push(utf8(u32())); break; // BINUNICODE
      case 0x8c: stack.push(utf8(u8())); break; // SHORT_BINUNICODE
      case 0x8d: stack.push(utf8(u64())); break; // BINUNICODE8
      case 0x54: { const n = i32(); stack.push(new TextDecoder('latin1').decode(take(n))); break; } // BINSTRING (Python 2 str)
      case 0x55: stack.push(new TextDecoder('latin1').decode(take(u8()))); break; // SHORT_BINSTRING
      case 0x42: stack.push(take(u32()).slice()); break; // BINBYTES
      case 0x43: stack.push(take(u8()).slice()); break; // SHORT_BINBYTES
      case 0x8e: stack.push(take(u64()).slice()); break; // BINBYTES8
      case 0x96: stack.push(take(u64()).slice()); break; // BYTEARRAY8

      case 0x7d: stack.push(new Map()); break; // EMPTY_DICT
      case 0x5d: stack.push([]); break; // EMPTY_LIST
      case 0x29: stack.push([]); break; // EMPTY_TUPLE
      case 0x8f: stack.push(new Set()); break; // EMPTY_SET
      case 0x74: { const items = popMark(); stack.push(items); break; } // TUPLE (popMark swaps `stack`: pop first)
      case 0x85: stack.push([pop()]); break; // TUPLE1
      case 0x86: { const b = pop(); const a = pop(); stack.push([a, b]); break; } // TUPLE2
      case 0x87: { const c = pop(); const b = pop(); const a = pop(); stack.push([a, b, c]); break; } // TUPLE3
      case 0x6c: { const items = popMark(); stack.push(items); break; } // LIST
      case 0x64: { const items = popMark(); const map = new Map(); setItems(map, items); stack.push(map); break; } // DICT
      case 0x91: { const items = popMark(); stack.push(new Set(items)); break; } // FROZENSET
      case 0x73: { const value = pop(); const key = pop(); setItems(top(), [key, value]); break; } // SETITEM
      case 0x75: { const items = popMark(); setItems(top(), items); break; } // SETITEMS
      case 0x61: { const item = pop(); appendItems(top(), [item]); break; } // APPEND
      case 0x65: { const items = popMark(); appendItems(top(), items); break; } // APPENDS
      case 0x90: { const items = popMark(); appendItems(top(), items); break; } // ADDITEMS

      case 0x71: memo.set(u8(), top()); break; // BINPUT
      case 0x72: memo.set(u32(), top()); break; // LONG_BINPUT
      case 0x94: memo.set(memo.size, top()); break; // MEMOIZE
      case 0x70: memo.set(Number.parseInt(line(), 10), top()); break; // PUT (text)
      case 0x68: stack.push(memoGet(u8())); break; // BINGET
      case 0x6a: stack.push(memoGet(u32())); break; // LONG_BINGET
      case 0x67: stack.push(memoGet(Number.parseInt(line(), 10))); break; // GET (text)

      case 0x63: { const module = line(); const name = line(); stack.push(new PyGlobal(module, name)); break; } // GLOBAL
      case 0x93: { // STACK_GLOBAL
        const name = pop();
        const module = pop();
        if (typeof module !== 'string' || typeof name !== 'string') throw new PickleError(`STACK_GLOBAL at byte ${at} needs two strings`);
        stack.push(new PyGlobal(module, name));
        break;
      }
      case 0x52: { const args = pop(); const callable = pop(); stack.push(call(callable, Array.isArray(args) ? args : [args])); break; } // REDUCE
      case 0x81: { const args = pop(); const cls = pop(); stack.push(construct(cls, Array.isArray(args) ? args : [])); break; } // NEWOBJ
      case 0x92: { pop(); const args = pop(); const cls = pop(); stack.push(construct(cls, Array.isArray(args) ? args : [])); break; } // NEWOBJ_EX
      case 0x62: { // BUILD: obj.__setstate__(state) or obj.__dict__.update(state)
        const state = pop();
        const target = top();
        if (target instanceof PyObject) target.state = state;
        // Maps (OrderedDict's `_metadata`), tensors and lists carry no state we use.
        break;
      }
      case 0x51: stack.push(persistentLoad(pop())); break; // BINPERSID
      case 0x50: stack.push(persistentLoad(line())); break; // PERSID

      default:
        throw new PickleError(`unsupported pickle opcode 0x${opcode.toString(16).padStart(2, '0')} at byte ${at}`);
    }
  }
}
