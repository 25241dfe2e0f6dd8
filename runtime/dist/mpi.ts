/**
 * The Collective over the MPI library itself: MPI_Init / MPI_Comm_rank / MPI_Comm_size / MPI_Allreduce / MPI_Bcast /
 * MPI_Barrier / MPI_Abort / MPI_Finalize of the installed libmpi.so, called through koffi (a maintained FFI package
 * that ships prebuilt binaries as npm packages: nothing is compiled at install time, and it loads with
 * ignore-scripts). Why koffi rather than an N-API addon: docs/DISTRIBUTED.md.
 *
 * Only runtime/dist/collective.ts imports this module, and only when an MPI launcher started the process.
 */
import { writeSync } from 'node:fs';
import koffi, { type LibraryHandle } from 'koffi';
import type { BroadcastBuffer, Collective } from './collective-api.ts';

/** Libraries tried in order: DINO_MPI_LIB, then Open MPI 4/5's soname (Debian's libopenmpi3), then the dev link. */
const LIBRARY_CANDIDATES = ['libmpi.so.40', 'libmpi.so'];

/** MPI's `count` arguments are C ints: larger buffers go in chunks of this many elements. */
const MAX_COUNT = 1 << 30;

/**
 * Open MPI's handles (MPI_Comm, MPI_Datatype, MPI_Op) are pointers to structs the library exports as globals:
 * its mpi.h defines `MPI_COMM_WORLD` as `&ompi_mpi_comm_world`, `MPI_FLOAT` as `&ompi_mpi_float`, `MPI_SUM` as
 * `&ompi_mpi_op_sum`. Without a C compiler there is no mpi.h to expand, so we take those addresses with koffi's
 * `lib.symbol` (the address of an exported variable). `MPI_IN_PLACE` is `(void *) 1` in Open MPI.
 *
 * MPICH (and Intel MPI, MVAPICH, Cray MPICH, its ABI family) would need another table: its handles are plain C
 * ints fixed by its mpi.h (MPI_COMM_WORLD = 0x44000000, MPI_FLOAT = 0x4c00040a, MPI_BYTE = 0x4c00010d,
 * MPI_SUM = 0x58000003), passed as `int` arguments, and its MPI_IN_PLACE is `(void *) -1`; libmpi.so.12 is its
 * soname. Only Open MPI is implemented; an MPICH library is refused by name below.
 */
interface OpenMpiHandles {
  readonly commWorld: bigint;
  readonly float: bigint;
  readonly byte: bigint;
  readonly opSum: bigint;
}
const MPI_IN_PLACE = 1n;
const MPI_SUCCESS = 0;

interface MpiFunctions {
  readonly init: (argc: null, argv: null) => number;
  readonly initialized: (flag: number[]) => number;
  readonly commRank: (comm: bigint, rank: number[]) => number;
  readonly commSize: (comm: bigint, size: number[]) => number;
  readonly allreduce: (send: bigint | ArrayBufferView, recv: ArrayBufferView, count: number, type: bigint, op: bigint, comm: bigint) => number;
  readonly bcast: (buf: ArrayBufferView, count: number, type: bigint, root: number, comm: bigint) => number;
  readonly barrier: (comm: bigint) => number;
  readonly abort: (comm: bigint, code: number) => number;
  readonly finalize: () => number;
}

function loadLibrary(env: NodeJS.ProcessEnv): { lib: LibraryHandle; path: string } {
  const candidates = env['DINO_MPI_LIB'] ? [env['DINO_MPI_LIB']] : LIBRARY_CANDIDATES;
  const failures: string[] = [];
  for (const path of candidates) {
    try {
      // RTLD_GLOBAL: Open MPI dlopens its own components (mca_*.so), which resolve symbols of libmpi/libopen-pal
      // from the global namespace; with koffi's default RTLD_LOCAL they fail with "undefined symbol".
      return { lib: koffi.load(path, { global: true }), path };
    } catch (err) {
      failures.push(`${path}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
  throw new Error(
    `could not load the MPI library (${failures.join('; ')}). Install Open MPI (Debian: apt-get install openmpi-bin) ` +
      `or set DINO_MPI_LIB to the path of Open MPI's libmpi.so; or run without mpirun/srun for a single process.`,
  );
}

function openMpiHandles(lib: LibraryHandle, path: string): OpenMpiHandles {
  const address = (symbol: string): bigint => {
    let p: unknown;
    try {
      p = lib.symbol(symbol);
    } catch {
      p = undefined;
    }
    if (typeof p !== 'bigint' || p === 0n) {
      throw new Error(
        `${path} exports no "${symbol}": it is not Open MPI (MPICH-family libraries use integer handles, not supported yet; ` +
          `see docs/DISTRIBUTED.md). Set DINO_MPI_LIB to Open MPI's libmpi.so.40.`,
      );
    }
    return p;
  };
  return { commWorld: address('ompi_mpi_comm_world'), float: address('ompi_mpi_float'), byte: address('ompi_mpi_byte'), opSum: address('ompi_mpi_op_sum') };
}

function bindFunctions(lib: LibraryHandle): MpiFunctions {
  // Handles are `void *` (Open MPI's are pointers); typed arrays passed for `void *` go as their data pointer
  // (no copy), so MPI reads and writes the JS buffer in place.
  return {
    init: lib.func('int MPI_Init(void *argc, void *argv)'),
    initialized: lib.func('int MPI_Initialized(_Out_ int *flag)'),
    commRank: lib.func('int MPI_Comm_rank(void *comm, _Out_ int *rank)'),
    commSize: lib.func('int MPI_Comm_size(void *comm, _Out_ int *size)'),
    allreduce: lib.func('int MPI_Allreduce(void *sendbuf, void *recvbuf, int count, void *datatype, void *op, void *comm)'),
    bcast: lib.func('int MPI_Bcast(void *buffer, int count, void *datatype, int root, void *comm)'),
    barrier: lib.func('int MPI_Barrier(void *comm)'),
    abort: lib.func('int MPI_Abort(void *comm, int errorcode)'),
    finalize: lib.func('int MPI_Finalize()'),
  };
}

let instance: MpiCollective | undefined;

export class MpiCollective implements Collective {
  readonly kind = 'mpi' as const;
  private finalized = false;

  private constructor(
    readonly rank: number,
    readonly size: number,
    readonly libraryPath: string,
    private readonly fn: MpiFunctions,
    private readonly h: OpenMpiHandles,
  ) {}

  /** Initializes MPI once per process (MPI cannot be initialized twice); later calls return the same collective. */
  static init(env: NodeJS.ProcessEnv = process.env): MpiCollective {
    if (instance) {
      if (instance.finalized) throw new Error('MPI was finalized in this process; it cannot be initialized again (an MPI rule)');
      return instance;
    }
    const { lib, path } = loadLibrary(env);
    const handles = openMpiHandles(lib, path);
    const fn = bindFunctions(lib);
    const flag = [0];
    check(fn.initialized(flag), 'MPI_Initialized');
    if (flag[0] === 0) check(fn.init(null, null), 'MPI_Init');
    const rank = [0], size = [0];
    check(fn.commRank(handles.commWorld, rank), 'MPI_Comm_rank');
    check(fn.commSize(handles.commWorld, size), 'MPI_Comm_size');
    instance = new MpiCollective(rank[0]!, size[0]!, path, fn, handles);
    return instance;
  }

  allreduceSum(buf: Float32Array): void {
    this.assertOpen('allreduceSum');
    for (let start = 0; start < buf.length; start += MAX_COUNT) {
      const chunk = buf.subarray(start, Math.min(buf.length, start + MAX_COUNT));
      check(this.fn.allreduce(MPI_IN_PLACE, chunk, chunk.length, this.h.float, this.h.opSum, this.h.commWorld), 'MPI_Allreduce');
    }
  }

  broadcast(buf: BroadcastBuffer, root: number): void {
    this.assertOpen('broadcast');
    if (!Number.isInteger(root) || root < 0 || root >= this.size) throw new Error(`broadcast: root ${root} is not a rank of this job (size ${this.size})`);
    const bytes = new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
    for (let start = 0; start < bytes.length; start += MAX_COUNT) {
      const chunk = bytes.subarray(start, Math.min(bytes.length, start + MAX_COUNT));
      check(this.fn.bcast(chunk, chunk.length, this.h.byte, root, this.h.commWorld), 'MPI_Bcast');
    }
  }

  barrier(): void {
    this.assertOpen('barrier');
    check(this.fn.barrier(this.h.commWorld), 'MPI_Barrier');
  }

  abort(code: number, message: string): never {
    // Synchronous write: MPI_Abort kills this process before an asynchronous stream would flush.
    writeSync(2, `${message}\n`);
    if (!this.finalized) this.fn.abort(this.h.commWorld, code); // MPI calls are erroneous after MPI_Finalize
    process.exit(code); // MPI_Abort does not return; this is for a library that would.
  }

  finalize(): void {
    if (this.finalized) return;
    this.finalized = true;
    check(this.fn.finalize(), 'MPI_Finalize');
  }

  private assertOpen(what: string): void {
    if (this.finalized) throw new Error(`${what}: MPI was already finalized in this process`);
  }
}

function check(code: number, call: string): void {
  // MPI_COMM_WORLD's default error handler (MPI_ERRORS_ARE_FATAL) aborts before a code comes back; this is for a
  // library or communicator set to return errors.
  if (code !== MPI_SUCCESS) throw new Error(`${call} returned MPI error code ${code}`);
}
