/**
 * The Collective interface (runtime/dist/collective.ts re-exports it), in a file of its own so that the
 * implementations (runtime/dist/mpi.ts) import it without importing collective.ts, which loads them.
 */

/** Typed arrays a broadcast moves as raw bytes. */
export type BroadcastBuffer = Float32Array | Float64Array | Int32Array | Uint32Array | Uint8Array;

export interface Collective {
  /** 'single': one process, no library; 'mpi': the MPI library's MPI_COMM_WORLD. */
  readonly kind: 'single' | 'mpi';
  /** This process's rank, 0 .. size-1. Rank 0 alone writes the run's files. */
  readonly rank: number;
  readonly size: number;
  /** Replaces `buf` on every rank, in place, by the element-wise sum of every rank's `buf` (same length on all). */
  allreduceSum(buf: Float32Array): void;
  /** Replaces `buf` on every rank, in place, by root's `buf` (same byte length on all). */
  broadcast(buf: BroadcastBuffer, root: number): void;
  /** Blocks until every rank has called it. */
  barrier(): void;
  /**
   * Ends the whole job: prints `message` (prefixed by the rank) on stderr and stops every rank with exit code `code`
   * (MPI_Abort). Never returns.
   */
  abort(code: number, message: string): never;
  /** Ends the use of the library; call once, on every rank, before a normal exit. Later calls do nothing. */
  finalize(): void;
}
