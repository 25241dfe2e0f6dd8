/**
 * The collective operations a data-parallel run needs (docs/DISTRIBUTED.md), behind one small interface so that
 * the transport can change: the MPI library (runtime/dist/mpi.ts) on CPU clusters, NCCL later on GPU clusters,
 * and a single process with no library at all. A run picks its implementation once, at start, from the launcher's
 * environment: plain `npx dino train` never loads an MPI library.
 */
import type { BroadcastBuffer, Collective } from './collective-api.ts';

export type { BroadcastBuffer, Collective };

/** One process: every collective is the identity. */
export class SingleProcess implements Collective {
  readonly kind = 'single' as const;
  readonly rank = 0;
  readonly size = 1;
  allreduceSum(_buf: Float32Array): void {}
  broadcast(_buf: BroadcastBuffer, root: number): void {
    if (root !== 0) throw new Error(`broadcast: root ${root} does not exist in a single-process run (size 1)`);
  }
  barrier(): void {}
  abort(code: number, message: string): never {
    process.stderr.write(`${message}\n`);
    process.exit(code);
  }
  finalize(): void {}
}

/**
 * Which launcher started this process, from the variables it sets: Open MPI's mpirun (OMPI_COMM_WORLD_SIZE),
 * PMIx launchers (PMIX_RANK: Open MPI 4+, SLURM's srun --mpi=pmix), PMI-1/2 launchers (PMI_SIZE: MPICH's Hydra,
 * srun --mpi=pmi2), SLURM's srun with more than one task (SLURM_PROCID with SLURM_NTASKS > 1; a batch script alone
 * has SLURM_PROCID=0 and one task, so it stays a single process). Undefined when none did.
 */
export function detectLauncher(env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (env['OMPI_COMM_WORLD_SIZE'] !== undefined) return `Open MPI (OMPI_COMM_WORLD_SIZE=${env['OMPI_COMM_WORLD_SIZE']})`;
  if (env['PMIX_RANK'] !== undefined) return `PMIx (PMIX_RANK=${env['PMIX_RANK']})`;
  if (env['PMI_SIZE'] !== undefined) return `PMI (PMI_SIZE=${env['PMI_SIZE']})`;
  if (env['SLURM_PROCID'] !== undefined && Number(env['SLURM_NTASKS'] ?? env['SLURM_NPROCS'] ?? '1') > 1) {
    return `SLURM (SLURM_PROCID=${env['SLURM_PROCID']}, SLURM_NTASKS=${env['SLURM_NTASKS'] ?? env['SLURM_NPROCS']})`;
  }
  return undefined;
}

/**
 * The collective for this process: MPI when a launcher started it (or DINO_COLLECTIVE=mpi), else a single process.
 * DINO_COLLECTIVE=single forces one process even under a launcher (each rank then runs alone).
 * The MPI module (and koffi, and libmpi) is imported only on the MPI road.
 */
export async function openCollective(env: NodeJS.ProcessEnv = process.env): Promise<Collective> {
  const forced = env['DINO_COLLECTIVE'];
  if (forced !== undefined && forced !== 'single' && forced !== 'mpi') {
    throw new Error(`DINO_COLLECTIVE=${forced}: expected "single" or "mpi" (or leave it unset to detect the launcher)`);
  }
  const useMpi = forced === 'mpi' || (forced === undefined && detectLauncher(env) !== undefined);
  if (!useMpi) return new SingleProcess();
  const { MpiCollective } = await import('./mpi.ts');
  return MpiCollective.init(env);
}

/**
 * Turns an uncaught error or unhandled rejection on any rank into MPI_Abort of the whole job, with the rank and the
 * error in the message: without it, the other ranks would wait forever in their next collective.
 */
export function abortOnUncaughtError(collective: Collective): void {
  const onError = (err: unknown) => {
    const text = err instanceof Error ? (err.stack ?? err.message) : String(err);
    collective.abort(1, `rank ${collective.rank}/${collective.size} failed: ${text}`);
  };
  process.on('uncaughtException', onError);
  process.on('unhandledRejection', onError);
}
