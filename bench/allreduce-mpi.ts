/**
 * Time of one all-reduce (sum, float32, in place) through the MPI Collective (runtime/dist/), for buffers of the
 * sizes a data-parallel step packs. Run under a launcher, e.g.
 *   OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl_vader_single_copy_mechanism=none \
 *     mpirun --oversubscribe -np 2 node --import tsx bench/allreduce-mpi.ts [repeats]
 * Rank 0 prints, per size, the median and minimum time and the bus bandwidth (2 (N-1)/N bytes per element per rank,
 * the traffic of a ring all-reduce), after one warm-up call.
 */
import { abortOnUncaughtError, openCollective } from '../runtime/dist/collective.ts';

const SIZES: readonly [string, number][] = [
  ['2^20 floats', 1 << 20],
  ['spirals MLP (hidden 64), 4.6k', 4_610],
  ['ViT-S/16 + DINO head, K 65536 (trained floats)', 43_952_256],
];
const repeats = Number(process.argv[2] ?? 5);
const c = await openCollective();
abortOnUncaughtError(c);
for (const [what, n] of SIZES) {
  const buf = new Float32Array(n).fill(1);
  c.allreduceSum(buf); // warm-up: connection set-up and page faults
  const times: number[] = [];
  for (let i = 0; i < repeats; i++) {
    c.barrier();
    const t = performance.now();
    c.allreduceSum(buf);
    times.push(performance.now() - t);
  }
  times.sort((a, b) => a - b);
  const median = times[times.length >> 1]!;
  const busBytes = (2 * (c.size - 1) / c.size) * 4 * n;
  if (c.rank === 0) {
    console.log(`${what}: ${n} floats, ${(4 * n / 2 ** 20).toFixed(1)} MiB: median ${median.toFixed(2)} ms, min ${times[0]!.toFixed(2)} ms over ${repeats}, bus bandwidth ${(busBytes / (median / 1000) / 1e9).toFixed(2)} GB/s (${c.size} ranks)`);
  }
}
c.finalize();
