/**
 * `dino <command>`: the entry. It names the commands and dispatches; cli/ holds their implementations and
 * flag parsing. It stands above every other room (docs/ARCHITECTURE.md, "Rooms and arrows"), so nothing
 * imports it. A command's module is imported when the command runs, so `dino --help` and small commands
 * do not load ONNX Runtime, sharp or the browser demo.
 */
import { preselectOrt } from '../runtime/ep/ort-select.ts';

type Handler = (argv: string[]) => Promise<void>;

const COMMANDS: Record<string, { summary: string; run: Handler }> = {
  start: { summary: 'the default job: train fmnist-quick, export the teacher, k-NN vs the random-init teacher', run: async (a) => (await import('../cli/start.ts')).startCommand(a) },
  train: { summary: 'train DINO (see dino train --help)', run: async (a) => (await import('../cli/train.ts')).trainCommand(a) },
  export: { summary: 'export a teacher (run folder or imported weights) as an inference ONNX model', run: async (a) => (await import('../cli/exports.ts')).exportCommand(a) },
  knn: { summary: 'weighted k-NN evaluation of a run or an exported model', run: async (a) => (await import('../cli/exports.ts')).knnCommand(a) },
  linear: { summary: 'linear probe on frozen features (trained with compiled step graphs)', run: async (a) => (await import('../cli/exports.ts')).linearCommand(a) },
  attention: { summary: 'per-head [CLS] attention maps of an image as PNGs', run: async (a) => (await import('../cli/exports.ts')).attentionCommand(a) },
  serve: { summary: 'browser demo on 127.0.0.1: attention maps and nearest neighbours in the browser', run: async (a) => (await import('../cli/exports.ts')).serveCommand(a) },
  report: { summary: 'write DIR/report.html (curves, k-NN table, attention maps)', run: async (a) => (await import('../cli/exports.ts')).reportCommand(a) },
  bench: { summary: 'training and inference throughput, FLOPs, memory', run: async (a) => (await import('../cli/tools.ts')).benchCommand(a) },
  inspect: { summary: 'parameter table of a preset', run: async (a) => (await import('../cli/tools.ts')).inspectCommand(a) },
  spirals: { summary: 'tiny end-to-end demo: an MLP learns two spirals through compiled step graphs', run: async () => (await import('../cli/tools.ts')).spiralsCommand() },
  setup: { summary: 'setup cuda: install the CUDA execution provider from npm into .dino/cuda', run: async (a) => (await import('../cli/gpu.ts')).setupCommand(a) },
  doctor: { summary: 'which execution providers (cpu, cuda, webgpu) start here, and how to fix those that do not', run: async (a) => (await import('../cli/gpu.ts')).doctorCommand(a) },
};

function usage(): string {
  const lines = Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(10)} ${c.summary}`);
  return `usage: dino <command> [options]\n\ncommands:\n${lines.join('\n')}\n\nRun "dino <command> --help" for a command's options.`;
}

async function main(): Promise<void> {
  const [cmd, ...rest] = process.argv.slice(2);
  if (!cmd || cmd === '--help' || cmd === '-h' || cmd === 'help') return void console.log(usage());
  preselectOrt(rest); // --ep cuda loads the `dino setup cuda` build, which must be the only ORT in the process
  const c = COMMANDS[cmd];
  if (!c) {
    console.error(`unknown command "${cmd}"\n\n${usage()}`);
    process.exitCode = 2;
    return;
  }
  await c.run(rest);
}

main().catch(async (e: unknown) => {
  // Typed errors from below are worded here with the flag names (cli/errors.ts).
  const { wordError } = await import('../cli/errors.ts');
  console.error(`error: ${wordError(e)}`);
  process.exitCode = 1;
});
