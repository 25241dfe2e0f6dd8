/**
 * `dino <command>`: the entry. It names the commands and dispatches; each command (its options, help and work)
 * lives in cli/. It stands above every other room (docs/ARCHITECTURE.md, "Rooms and arrows"), so nothing imports
 * it. A command's module is imported when the command runs, so `dino --help` does not load ONNX Runtime.
 *
 * Exit codes: 0 done, 1 the work failed (the message names the file or value and what to do), 2 a usage mistake
 * (an unknown command or flag, a bad value), 130 interrupted twice.
 */
import { readFileSync } from 'node:fs';
import { preselectOrt } from '../runtime/ep/ort-select.ts';
import { type Command, UsageError, didYouMean, runCommand } from '../cli/args.ts';

/** Every command, by name: a one-line summary for `dino --help` and the module that implements it. */
const COMMANDS: Record<string, { summary: string; load: () => Promise<Command<any>> }> = {
  start: { summary: 'the default job: train fmnist-quick scoring a k-NN / linear-probe curve, export the teacher, both vs random init and raw pixels', load: async () => (await import('../cli/start.ts')).startCommand },
  train: { summary: 'train DINO (a preset, or --arch vit_small on your image folder); --resume DIR continues a run', load: async () => (await import('../cli/train.ts')).trainCommand },
  export: { summary: 'export a teacher as an inference ONNX model, or its weights as .pth / .safetensors', load: async () => (await import('../cli/exports.ts')).exportCommand },
  features: { summary: 'frozen features of a dataset to a .safetensors / .npy file (streamed, resumable)', load: async () => (await import('../cli/exports.ts')).featuresCommand },
  knn: { summary: 'weighted k-NN evaluation of a run or an exported model', load: async () => (await import('../cli/exports.ts')).knnCommand },
  linear: { summary: 'linear probe on frozen features (trained with compiled step graphs)', load: async () => (await import('../cli/exports.ts')).linearCommand },
  attention: { summary: 'per-head [CLS] attention maps of an image as PNGs', load: async () => (await import('../cli/exports.ts')).attentionCommand },
  serve: { summary: 'browser demo on 127.0.0.1: attention maps and nearest neighbours in the browser', load: async () => (await import('../cli/exports.ts')).serveCommand },
  report: { summary: 'write DIR/report.html (curves, k-NN table, attention maps)', load: async () => (await import('../cli/exports.ts')).reportCommand },
  bench: { summary: 'training and inference throughput, FLOPs, memory', load: async () => (await import('../cli/tools.ts')).benchCommand },
  inspect: { summary: 'parameter table of a preset', load: async () => (await import('../cli/tools.ts')).inspectCommand },
  spirals: { summary: 'tiny end-to-end demo: an MLP learns two spirals through compiled step graphs', load: async () => (await import('../cli/tools.ts')).spiralsCommand },
  setup: { summary: 'setup cuda: install the CUDA execution provider from npm into .dino/cuda', load: async () => (await import('../cli/gpu.ts')).setupCommand },
  doctor: { summary: 'which execution providers (cpu, cuda, webgpu) start here, and how to fix those that do not', load: async () => (await import('../cli/gpu.ts')).doctorCommand },
};

function usage(): string {
  const lines = Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(10)} ${c.summary}`);
  return `usage: dino <command> [options]\n\ncommands:\n${lines.join('\n')}\n\noptions:\n  -h, --help     this list; "dino <command> --help" for a command's options\n  -v, --version  the version\n`;
}

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { name: string; version: string };
  return `${pkg.name} ${pkg.version}`;
}

async function main(): Promise<void> {
  const [cmd, ...rest] = process.argv.slice(2);
  if (cmd === undefined || cmd === '--help' || cmd === '-h' || cmd === 'help') return void process.stdout.write(usage());
  if (cmd === '--version' || cmd === '-v' || cmd === 'version') return void console.log(version());
  const entry = COMMANDS[cmd];
  if (!entry) throw new UsageError(`unknown command "${cmd}"${didYouMean(cmd, Object.keys(COMMANDS))}`);
  preselectOrt(rest); // --ep cuda loads the `dino setup cuda` build, which must be the only ORT in the process
  await runCommand(await entry.load(), rest);
}

main().catch(async (e: unknown) => {
  if (e instanceof UsageError) {
    const how = e.command ? `"dino ${e.command} --help" lists its options` : '"dino --help" lists the commands';
    console.error(`error: ${e.message}\n${how}`);
    process.exitCode = 2;
    return;
  }
  // Typed errors from below are worded here with the flag names (cli/errors.ts).
  const { wordError } = await import('../cli/errors.ts');
  console.error(`error: ${wordError(e)}`);
  process.exitCode = 1;
});
