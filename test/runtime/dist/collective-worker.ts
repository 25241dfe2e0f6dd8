/**
 * Run under mpirun by collective.test.ts, one scenario per argument:
 * - `collectives`: rank/size, all-reduce of known vectors (small, and larger than 2^20 floats), broadcast; each rank
 *   checks its results and prints one JSON line `{"rank", "size", "kind", "checks"}`.
 * - `throw`: rank 1 throws while rank 0 waits in an all-reduce; the job must end through MPI_Abort.
 * - `kill`: rank 1 kills itself with SIGKILL while rank 0 waits in an all-reduce.
 */
import { abortOnUncaughtError, openCollective } from '../../../runtime/dist/collective.ts';

const scenario = process.argv[2];
const collective = await openCollective();
abortOnUncaughtError(collective);
const { rank, size } = collective;

function expectEqual(what: string, got: ArrayLike<number>, want: (i: number) => number): void {
  for (let i = 0; i < got.length; i++) {
    if (got[i] !== want(i)) throw new Error(`${what}: element ${i} is ${got[i]}, expected ${want(i)}`);
  }
}

if (scenario === 'collectives') {
  const checks: string[] = [];
  // Small integers are exact in float32 whatever the reduction order, so the sums are compared exactly.
  const small = Float32Array.from({ length: 7 }, (_, i) => (rank + 1) * (i + 1));
  collective.allreduceSum(small);
  const rankSum = (size * (size + 1)) / 2;
  expectEqual('small all-reduce', small, (i) => rankSum * (i + 1));
  checks.push('allreduce-small');

  const n = (1 << 21) + 3; // above 2^20 floats, and not a multiple of any chunk or segment size
  const large = new Float32Array(n);
  for (let i = 0; i < n; i++) large[i] = (i % 1000) + rank * 1000;
  collective.allreduceSum(large);
  const rankOffsets = (1000 * (size * (size - 1))) / 2;
  expectEqual('large all-reduce', large, (i) => size * (i % 1000) + rankOffsets);
  checks.push(`allreduce-large-${n}`);

  // A view into a larger buffer: only the view's bytes travel.
  const backing = new Float32Array(10).fill(-1);
  const view = backing.subarray(3, 6);
  view.fill(rank + 1);
  collective.allreduceSum(view);
  expectEqual('sub-array all-reduce', backing, (i) => (i >= 3 && i < 6 ? rankSum : -1));
  checks.push('allreduce-subarray');

  const root = size - 1;
  const floats = Float32Array.from({ length: 5 }, (_, i) => (rank === root ? i + 0.5 : NaN));
  collective.broadcast(floats, root);
  expectEqual('float broadcast', floats, (i) => i + 0.5);
  const ints = Int32Array.from({ length: 3 }, (_, i) => (rank === 0 ? -7 * (i + 1) : 0));
  collective.broadcast(ints, 0);
  expectEqual('int broadcast', ints, (i) => -7 * (i + 1));
  checks.push('broadcast');

  collective.barrier();
  console.log(JSON.stringify({ rank, size, kind: collective.kind, checks }));
  collective.finalize();
} else if (scenario === 'throw' || scenario === 'kill') {
  const buf = new Float32Array(16).fill(1);
  collective.allreduceSum(buf); // both ranks pass one collective, so the failure is mid-run
  if (rank === 1) {
    await new Promise((r) => setTimeout(r, 200));
    if (scenario === 'kill') process.kill(process.pid, 'SIGKILL');
    throw new Error('deliberate failure in the test worker');
  }
  collective.allreduceSum(buf); // rank 0 waits here for a rank that never comes
  console.log(`rank ${rank} passed an all-reduce it should never have finished`);
  collective.finalize();
} else {
  throw new Error(`collective-worker.ts: unknown scenario "${scenario}" (expected collectives, throw or kill)`);
}
