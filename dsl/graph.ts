/**
 * The graph IR: symbolic tensors, nodes, parameters and module scopes.
 *
 * Building never throws on a modelling mistake. An op whose shape rule fails records a `DslError`
 * (op, module path, shapes) and returns a *poisoned* tensor; ops fed a poisoned tensor stay quiet, so one
 * mistake reports once and every independent mistake in the graph is reported together by `validate()`.
 */
import * as E from 'fp-ts/lib/Either.js';
import { type Dim, type Shape, formatShape, shapeEq } from './shape.ts';

export type DType = 'float32' | 'float64' | 'float16' | 'bfloat16' | 'int64' | 'int32' | 'bool';
/**
 * Dtypes of parameters and state (master weights): float16 and bfloat16 exist only inside graphs (see
 * dsl/autocast.ts; onnxruntime-node cannot even hold a bfloat16 tensor).
 */
export type FloatDType = 'float32' | 'float64';
export type HalfDType = 'float16' | 'bfloat16';
export const isFloat = (d: DType): d is FloatDType | HalfDType => d === 'float32' || d === 'float64' || d === 'float16' || d === 'bfloat16';

/**
 * Where the matrix products of a module run (dsl/autocast.ts): `fp32` as written, `fp16` / `bf16` as PyTorch's
 * autocast on CUDA with dtype float16 / bfloat16 (16-bit operands, float32 everywhere else), `fp16-emulated` /
 * `bf16-emulated` their numbers computed in float32 (for CPU checks: ONNX Runtime's CPU provider runs float16
 * MatMul in float32 and may drop the roundings, and has no bfloat16 MatMul at all).
 */
export type Precision = 'fp32' | 'fp16' | 'fp16-emulated' | 'bf16' | 'bf16-emulated';

/**
 * What the machine that will run a graph offers, as far as building the graph needs to know (runtime/ep/records.ts
 * holds one per execution provider). A graph is lowered for its target as it is built: an op in `missingOps` is
 * replaced where it is applied by its record's `lowering` (the same values from ops the target has), and an
 * autocast product in a 16-bit dtype missing from `matmulDtypes` computes that dtype's roundings in float32
 * (dsl/autocast.ts). Lowering at build time, before autodiff, means the backward pass differentiates the form that
 * runs. Emission refuses a node whose op the target lacks (dsl/onnx/emit.ts), e.g. one without a lowering.
 */
export interface Target {
  /** Named in errors (an execution provider: `webgpu`). */
  readonly name: string;
  /** ONNX op types the target has no kernel for. */
  readonly missingOps: readonly string[];
  /** The 16-bit dtypes the target has a MatMul kernel in. */
  readonly matmulDtypes: readonly HalfDType[];
}

/** A target with every op and both 16-bit MatMuls: graphs are built as written (the default). */
export const ANY_TARGET: Target = { name: 'any', missingOps: [], matmulDtypes: ['float16', 'bfloat16'] };

/** What a shape rule sees of a tensor: dtype, shape and, for constants, the values. */
export interface TensorInfo {
  readonly dtype: DType;
  readonly shape: Shape;
  readonly value?: ArrayLike<number> | undefined;
}

export interface DslError {
  readonly op: string;
  /** Module path of the op, e.g. `blocks.3.attn`; empty at top level. */
  readonly path: string;
  readonly message: string;
  /** The input shapes, formatted. */
  readonly shapes: readonly string[];
}

export function formatError(e: DslError): string {
  const where = e.path ? ` at ${e.path}` : '';
  const shapes = e.shapes.length ? ` (inputs ${e.shapes.join(', ')})` : '';
  return `${e.op}${where}: ${e.message}${shapes}`;
}

/** How a parameter is initialised (values are drawn in TS from the run's seeded PRNG). */
export type Init =
  | { kind: 'zeros' }
  | { kind: 'ones' }
  | { kind: 'constant'; value: number }
  | { kind: 'normal'; std: number }
  | { kind: 'truncnormal'; std: number; lo?: number; hi?: number }
  | { kind: 'uniform'; lo: number; hi: number };

export interface ParamSpec {
  /** Full hierarchical name, e.g. `blocks.0.attn.qkv.weight` (DINO state_dict keys). */
  readonly name: string;
  readonly shape: readonly number[];
  readonly dtype: FloatDType;
  readonly init: Init;
  /** Weight decay applies (DINO: not to biases and 1-D parameters). */
  readonly decay: boolean;
  /** False for frozen parameters (e.g. `last_layer.weight_g` with norm_last_layer). */
  readonly trainable: boolean;
  /** Free-form tags used by filters, e.g. `last_layer`. */
  readonly tags: readonly string[];
  /**
   * `param`: learned by the optimizer (when trainable). `optim`: optimizer state (moments, step counts).
   * `buffer`: persistent state updated by the
   * forward pass itself, e.g. BatchNorm running statistics (see `Scope.updateBuffer`).
   */
  readonly kind: 'param' | 'buffer' | 'optim';
}

export type Source =
  | { kind: 'input' }
  | { kind: 'const'; data: ArrayLike<number> }
  | { kind: 'param'; spec: ParamSpec }
  | { kind: 'node'; node: Node; index: number };

// ---- Op records: what a node's op is (made by `defineOp`, dsl/op.ts) ------------------------------------------

/**
 * How an attribute is written to ONNX. `dtype`: a DSL dtype written as ONNX's TensorProto data-type number
 * (Cast's `to`).
 */
export type AttrType = 'int' | 'float' | 'ints' | 'floats' | 'string' | 'dtype';

/** A constant input appended at emission time (ONNX takes e.g. Reshape's shape and ReduceSum's axes as inputs). */
export interface ConstInput {
  readonly dtype: DType;
  readonly shape: readonly number[];
  readonly data: ArrayLike<number>;
}

export interface VjpArgs<A> {
  readonly inputs: readonly Tensor[];
  readonly outputs: readonly Tensor[];
  readonly attrs: A;
  /** Cotangents of the outputs; null where no gradient flows (a symbolic zero, never materialised). */
  readonly grads: readonly (Tensor | null)[];
}

/** What a FLOP rule sees of a node, with its symbolic dims bound to values (dsl/flops.ts). */
export interface FlopArgs<A> {
  readonly inputs: readonly TensorInfo[];
  readonly outputs: readonly TensorInfo[];
  readonly attrs: A;
  /** Number of elements of a tensor. */
  readonly numel: (t: TensorInfo) => number;
  /** Size of dim `i` (negative counts from the end). */
  readonly dim: (t: TensorInfo, i: number) => number;
}

/**
 * An op record. The functions are methods rather than function-typed properties on purpose: method parameters
 * are bivariant, so an `OpDef<{ axis: number }>` is also an `OpDef<unknown>`, which is how a `Node` holds it
 * (`Graph.apply` checked the node's attrs against the op when it was built).
 */
export interface OpDef<A = unknown> {
  /** Registry key and node-name stem. */
  readonly name: string;
  /** ONNX operator type in the default domain. */
  readonly onnxType: string;
  /** Attributes emitted as ONNX attributes, with their types. Other attrs stay in the DSL. */
  readonly attrTypes: Readonly<Record<string, AttrType | undefined>>;
  outputCount(attrs: A): number;
  /** Output dtypes and shapes, or an error message naming what is wrong. */
  infer(inputs: readonly TensorInfo[], attrs: A): TensorInfo[] | string;
  /** Extra constant inputs lowered from attributes (null = an omitted optional input). */
  constInputs?(attrs: A, inputs: readonly TensorInfo[]): (ConstInput | null)[];
  /**
   * Gradients with respect to each input (null where none flows). `undefined` for ops whose outputs
   * are not differentiable (comparisons, casts to integers); a gradient reaching such an op is an error.
   * A gradient may have a broadcast of its input's shape: autodiff sums the broadcast axes.
   */
  vjp?(args: VjpArgs<A>): (Tensor | null)[];
  /** FLOPs of one node (see `cost` for the common rules); required, so no op goes uncounted. */
  flops(args: FlopArgs<A>): number;
  /**
   * The op's outputs built from other ops, for a graph whose target has no kernel for this one (`Target` in
   * dsl/graph.ts; `Graph.apply` calls it instead of adding the node). The same values; its gradient is the
   * lowered form's own.
   */
  lowering?(inputs: readonly Tensor[], attrs: A): Tensor[];
}

export class Tensor {
  constructor(
    readonly graph: Graph,
    readonly id: number,
    readonly dtype: DType,
    readonly shape: Shape,
    readonly source: Source,
    /** Name in the emitted ONNX graph. */
    readonly name: string,
    /** True when an upstream shape rule failed; the shape is then meaningless. */
    readonly poisoned = false,
  ) {}

  get rank(): number {
    return this.shape.length;
  }

  get value(): ArrayLike<number> | undefined {
    return this.source.kind === 'const' ? this.source.data : undefined;
  }

  /** The static size of dim `i` (negative counts from the end); throws for a symbolic dim. */
  dim(i: number): number {
    const d = this.shape[i < 0 ? this.shape.length + i : i];
    if (typeof d !== 'number') throw new Error(`dim ${i} of ${this.name} ${formatShape(this.shape)} is not static`);
    return d;
  }

  toString(): string {
    return `${this.name}: ${this.dtype}${formatShape(this.shape)}`;
  }
}

export interface Node {
  readonly id: number;
  /** The op, with its attribute type forgotten; `attrs` is what `apply` checked against it. */
  readonly op: OpDef;
  readonly inputs: readonly Tensor[];
  readonly outputs: readonly Tensor[];
  readonly attrs: unknown;
  /** Module path at creation, e.g. `blocks.0.attn`. */
  readonly path: string;
  /** Unique node name: `<path>/<OpName>_<n>`. */
  readonly name: string;
}

/** A stretch of the forward pass whose activations are recomputed in the backward pass (see `Graph.checkpoint`). */
export interface RecomputeRegion {
  /** Ids of the region's first and last node (ids count tensors too). */
  readonly first: number;
  readonly last: number;
  /** What the region reads besides parameters and constants. */
  readonly inputs: readonly Tensor[];
  /** The one tensor of the region that the rest of the graph differentiates through. */
  readonly output: Tensor;
  /** Builds the region again on the given inputs (new nodes, same parameters); returns its output. */
  readonly rebuild: (inputs: readonly Tensor[]) => Tensor;
}

export class Graph {
  readonly nodes: Node[] = [];
  /** Checkpointed regions, in creation order (see `checkpoint`). */
  readonly recompute: RecomputeRegion[] = [];
  readonly inputs: Tensor[] = [];
  readonly params = new Map<string, Tensor>();
  readonly outputs = new Map<string, Tensor>();
  /** New values of buffers computed by this graph, keyed like `params` (graph-input name). */
  readonly bufferUpdates = new Map<string, Tensor>();
  readonly errors: DslError[] = [];
  private nextId = 0;
  private readonly pathStack: string[] = [];
  private readonly usedNames = new Set<string>();
  private readonly scalarConsts = new Map<string, Tensor>();

  constructor(
    readonly name = 'graph',
    /** What the graph is built for (see `Target`); ops it lacks are lowered in `apply`. */
    readonly target: Target = ANY_TARGET,
  ) {}

  get path(): string {
    return this.pathStack[this.pathStack.length - 1] ?? '';
  }

  /** Runs `fn` with `path` as the module path of the nodes it creates. */
  within<T>(path: string, fn: () => T): T {
    this.pathStack.push(path);
    try {
      return fn();
    } finally {
      this.pathStack.pop();
    }
  }

  private uniqueName(base: string): string {
    let name = base;
    for (let i = 1; this.usedNames.has(name); i++) name = `${base}_${i}`;
    this.usedNames.add(name);
    return name;
  }

  input(name: string, dtype: DType, shape: Shape): Tensor {
    if (this.usedNames.has(name)) throw new Error(`graph input name "${name}" is already used`);
    const t = new Tensor(this, this.nextId++, dtype, shape, { kind: 'input' }, this.uniqueName(name));
    this.inputs.push(t);
    return t;
  }

  /** A constant; scalars are shared. `data` is copied into the graph as given. */
  constant(data: ArrayLike<number>, dtype: DType, shape: readonly number[]): Tensor {
    const n = shape.reduce((a, b) => a * b, 1);
    if (data.length !== n) throw new Error(`constant of shape ${formatShape(shape)} needs ${n} values, got ${data.length}`);
    const key = n === 1 ? `${dtype}:${shape.length}:${data[0]}` : undefined;
    const cached = key && this.scalarConsts.get(key);
    if (cached) return cached;
    const prefix = this.path ? `${this.path}/` : '';
    const t = new Tensor(this, this.nextId++, dtype, shape, { kind: 'const', data }, this.uniqueName(`${prefix}const`));
    if (key) this.scalarConsts.set(key, t);
    return t;
  }

  scalar(value: number, dtype: DType = 'float32'): Tensor {
    return this.constant([value], dtype, []);
  }

  /**
   * A parameter. Asking again for the same name returns the same tensor (weights shared between
   * calls, e.g. the student run on global and local crops); a different shape is an error.
   * `prefix` namespaces the graph input (`student.` / `teacher.`) without changing the parameter's name.
   */
  param(spec: ParamSpec, prefix = ''): Tensor {
    const inputName = prefix + spec.name;
    const existing = this.params.get(inputName);
    if (existing) {
      const prev = (existing.source as { spec: ParamSpec }).spec;
      if (!shapeEq(prev.shape, spec.shape)) {
        this.error('param', `parameter "${spec.name}" requested as ${formatShape(spec.shape)} but exists as ${formatShape(prev.shape)}`, []);
      }
      return existing;
    }
    if (this.usedNames.has(inputName)) throw new Error(`parameter name "${inputName}" clashes with another graph value`);
    const t = new Tensor(this, this.nextId++, spec.dtype, spec.shape, { kind: 'param', spec }, this.uniqueName(inputName));
    this.params.set(inputName, t);
    return t;
  }

  /**
   * Gradient checkpointing: returns `fn(inputs)` (fn may also read parameters), and autodiff does not keep the
   * nodes it creates for the backward pass: where their gradient is needed it builds `fn` again and
   * differentiates the copy, so the region's activations live only briefly. Costs one more forward of `fn`.
   * Only the returned tensor may be differentiated outside the region.
   */
  checkpoint(inputs: readonly Tensor[], fn: (inputs: readonly Tensor[]) => Tensor): Tensor {
    const first = this.nextId;
    const output = fn(inputs);
    this.recompute.push({ first, last: this.nextId - 1, inputs, output, rebuild: fn });
    return output;
  }

  /** Marks `t` as a graph output called `name`. */
  output(name: string, t: Tensor): void {
    if (this.outputs.has(name)) throw new Error(`graph output "${name}" is defined twice`);
    this.outputs.set(name, t);
  }

  error(op: string, message: string, inputs: readonly Tensor[]): void {
    this.errors.push({ op, path: this.path, message, shapes: inputs.map((t) => `${t.dtype}${formatShape(t.shape)}`) });
  }

  /**
   * Creates a node for `op`, running its shape rule; see the class comment for failures. `attrs` has the op's
   * attribute type, and may be left out only by an op whose attributes are all optional (most have none).
   * An op the target lacks is built as its record's lowering instead, where it has one (see `Target`).
   */
  apply<A>(op: OpDef<A>, inputs: readonly Tensor[], ...rest: {} extends A ? [attrs?: NoInfer<A>] : [attrs: NoInfer<A>]): Tensor[] {
    const attrs = (rest[0] ?? {}) as A;
    for (const t of inputs) {
      if (t.graph !== this) throw new Error(`${op.name}: input ${t.name} belongs to another graph`);
    }
    if (op.lowering && this.target.missingOps.includes(op.onnxType)) return op.lowering(inputs, attrs);
    const nodeId = this.nextId++;
    const base = this.path ? `${this.path}/${op.name}` : op.name;
    const name = this.uniqueName(base);
    let poisoned = inputs.some((t) => t.poisoned);
    let infos: readonly TensorInfo[] = [];
    if (!poisoned) {
      const r = op.infer(inputs, attrs);
      if (typeof r === 'string') {
        this.error(op.name, r, inputs);
        poisoned = true;
      } else infos = r;
    }
    if (poisoned) {
      const dtype = inputs[0]?.dtype ?? 'float32';
      infos = Array.from({ length: op.outputCount(attrs) }, () => ({ dtype, shape: [] }));
    }
    const outputs: Tensor[] = [];
    const node: Node = { id: nodeId, op, inputs: [...inputs], outputs, attrs, path: this.path, name };
    infos.forEach((info, index) => {
      const tname = this.uniqueName(infos.length === 1 ? name : `${name}:${index}`);
      outputs.push(new Tensor(this, this.nextId++, info.dtype, info.shape, { kind: 'node', node, index }, tname, poisoned));
    });
    this.nodes.push(node);
    return outputs;
  }

  /** The nodes the outputs depend on, in creation (= topological) order: what emission keeps. */
  liveNodes(): Node[] {
    const live = new Set<number>();
    const stack: Tensor[] = [...this.outputs.values()];
    while (stack.length) {
      const t = stack.pop()!;
      if (t.source.kind !== 'node' || live.has(t.source.node.id)) continue;
      live.add(t.source.node.id);
      stack.push(...t.source.node.inputs);
    }
    return this.nodes.filter((n) => live.has(n.id));
  }

  /** Every recorded problem, or the graph. */
  validate(): E.Either<DslError[], Graph> {
    if (this.errors.length) return E.left([...this.errors]);
    if (this.outputs.size === 0) return E.left([{ op: 'graph', path: '', message: `graph "${this.name}" has no outputs`, shapes: [] }]);
    return E.right(this);
  }
}

/** A module scope: a parameter-name prefix plus the module path used to name nodes. */
export class Scope {
  constructor(
    readonly graph: Graph,
    /** Module path, e.g. `blocks.0.attn` (also the parameter-name prefix). */
    readonly path = '',
    /** Graph-input namespace for parameters (e.g. `teacher.`), not part of the parameter name. */
    readonly paramPrefix = '',
    /** Autocast of the module and its children (dsl/autocast.ts); a scope keeps it in closures, so recomputed regions match. */
    readonly precision: Precision = 'fp32',
  ) {}

  child(name: string | number): Scope {
    return new Scope(this.graph, this.path ? `${this.path}.${name}` : String(name), this.paramPrefix, this.precision);
  }

  /** Runs `fn` with this scope's path naming the nodes it creates. */
  run<T>(fn: () => T): T {
    return this.graph.within(this.path, fn);
  }

  param(
    name: string,
    shape: readonly number[],
    init: Init,
    opts: { decay?: boolean; trainable?: boolean; tags?: readonly string[]; dtype?: FloatDType } = {},
  ): Tensor {
    const full = this.path ? `${this.path}.${name}` : name;
    return this.graph.param(
      {
        name: full,
        shape,
        dtype: opts.dtype ?? 'float32',
        init,
        // DINO's rule: no weight decay on biases and 1-D parameters (norms).
        decay: opts.decay ?? !(name.endsWith('bias') || shape.length <= 1),
        trainable: opts.trainable ?? true,
        tags: opts.tags ?? [],
        kind: 'param',
      },
      this.paramPrefix,
    );
  }

  /** Persistent non-learned state (BatchNorm running mean/var); never decayed, never trained. */
  buffer(name: string, shape: readonly number[], init: Init, dtype: FloatDType = 'float32'): Tensor {
    const full = this.path ? `${this.path}.${name}` : name;
    return this.graph.param({ name: full, shape, dtype, init, decay: false, trainable: false, tags: [], kind: 'buffer' }, this.paramPrefix);
  }

  /** Records the new value of a buffer (a training step emits it as the buffer's next state). */
  updateBuffer(name: string, value: Tensor): void {
    const key = this.paramPrefix + (this.path ? `${this.path}.${name}` : name);
    const buf = this.graph.params.get(key);
    if (!buf || (buf.source as { spec: ParamSpec }).spec.kind !== 'buffer') throw new Error(`updateBuffer: no buffer "${key}"`);
    if (this.graph.bufferUpdates.has(key)) throw new Error(`updateBuffer: buffer "${key}" updated twice in one graph`);
    this.graph.bufferUpdates.set(key, value);
  }
}

/** The spec of a parameter or buffer tensor (throws for other tensors). */
export function specOf(t: Tensor): ParamSpec {
  if (t.source.kind !== 'param') throw new Error(`${t.name} is not a parameter`);
  return t.source.spec;
}

export const dimsOf = (t: Tensor): Dim[] => [...t.shape];
