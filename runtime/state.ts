/**
 * The training state: a flat map of named tensors (parameters, teacher, optimizer moments, buffers),
 * held as ONNX Runtime tensors so one step's outputs feed the next step's inputs without a copy.
 */
import type { ParamSpec } from '../dsl/graph.ts';
import { Prng } from '../dsl/prng.ts';
import { drawInit } from '../dsl/init.ts';
import { ort } from './backend.ts';

export class TrainState {
  readonly tensors = new Map<string, ort.Tensor>();

  /** Fresh state for `specs`: values drawn in spec order from `prng`, or taken from `values` where given. */
  static init(specs: readonly ParamSpec[], prng: Prng, values: ReadonlyMap<string, Float32Array> = new Map()): TrainState {
    const s = new TrainState();
    for (const spec of specs) {
      const n = spec.shape.reduce((a, b) => a * b, 1);
      const given = values.get(spec.name);
      if (given && given.length !== n) throw new Error(`initial value for "${spec.name}" has ${given.length} elements, its shape [${spec.shape}] needs ${n}`);
      const data = given ? Float32Array.from(given) : drawInit(spec.init, n, prng);
      s.tensors.set(spec.name, new ort.Tensor('float32', data, spec.shape as number[]));
    }
    return s;
  }

  get(name: string): ort.Tensor {
    const t = this.tensors.get(name);
    if (!t) throw new Error(`state has no tensor "${name}"`);
    return t;
  }

  /** Float32 values of a state tensor (a view, not a copy). */
  values(name: string): Float32Array {
    return this.get(name).data as Float32Array;
  }

  set(name: string, t: ort.Tensor): void {
    this.tensors.set(name, t);
  }

  names(): string[] {
    return [...this.tensors.keys()];
  }
}
