/**
 * Launching test scripts under Open MPI's mpirun from a test: finds mpirun, sets the environment a root-run,
 * ssh-less container needs, and runs `node --import tsx <script>` on N ranks.
 */
import { spawn, spawnSync } from 'node:child_process';

/** Why the MPI tests cannot run here, or undefined when mpirun is on PATH. */
export function mpiUnavailable(): string | undefined {
  const probe = spawnSync('mpirun', ['--version'], { encoding: 'utf8' });
  if (probe.error) return `mpirun not found (${probe.error.message}); install Open MPI: apt-get install openmpi-bin`;
  if (!/Open MPI/.test(probe.stdout)) return `mpirun is not Open MPI's (${probe.stdout.split('\n')[0]}): these tests use Open MPI's flags`;
  return undefined;
}

/**
 * The environment for mpirun: Open MPI 4 refuses to start as root unless both OMPI_ALLOW_RUN_AS_ROOT* are set
 * (CI runs as root); its rsh launcher insists that its agent exists even for local ranks, so a container without
 * ssh needs an agent that exists (`false`, never called for local ranks); the shared-memory transport's
 * single-copy mode (CMA, process_vm_readv) is refused in containers without ptrace rights, so copy-in/copy-out is used.
 */
export function mpirunEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    OMPI_ALLOW_RUN_AS_ROOT: '1',
    OMPI_ALLOW_RUN_AS_ROOT_CONFIRM: '1',
    OMPI_MCA_btl_vader_single_copy_mechanism: 'none',
    ...extra,
  };
  if (spawnSync('sh', ['-c', 'command -v ssh || command -v rsh']).status !== 0) env['OMPI_MCA_plm_rsh_agent'] = 'false';
  return env;
}

export interface MpiRunResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly seconds: number;
}

/** Runs `mpirun -np <ranks> node --import tsx <script> ...args` and collects its output; kills it after `timeoutMs`. */
export function mpirun(ranks: number, script: string, args: readonly string[] = [], opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<MpiRunResult> {
  const argv = ['--oversubscribe', '-np', String(ranks), process.execPath, '--import', 'tsx', script, ...args];
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn('mpirun', argv, { env: mpirunEnv(opts.env), stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '', stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 120_000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, seconds: (performance.now() - started) / 1000 });
    });
  });
}
