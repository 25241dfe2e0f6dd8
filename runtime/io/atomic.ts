/**
 * Atomic file writes: a crash or an error at any point leaves either the previous file or the new one, never a
 * mix. The bytes go to a temp file in the same folder, which is fsynced and renamed over the target; then the folder
 * is fsynced, so the rename itself is durable. Chunks are written as they come (a large state is never copied
 * whole in memory).
 */
import * as fs from 'node:fs';
import * as nodePath from 'node:path';

function writeAll(fd: number, bytes: Uint8Array): void {
  let written = 0;
  while (written < bytes.length) written += fs.writeSync(fd, bytes, written, bytes.length - written);
}

/**
 * Writes the chunks to `path` atomically. `what` names the file in errors ("checkpoint", "weights"); producing a
 * chunk may throw (a tensor of the wrong size), and then nothing is written either.
 */
export function writeFileAtomic(path: string, chunks: () => Iterable<Uint8Array>, what: string): void {
  const folder = nodePath.dirname(nodePath.resolve(path));
  const tempPath = nodePath.join(folder, `.${nodePath.basename(path)}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`);
  let fd: number | undefined;
  try {
    fs.mkdirSync(folder, { recursive: true });
    fd = fs.openSync(tempPath, 'wx');
    for (const chunk of chunks()) writeAll(fd, chunk);
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fd = undefined;
    fs.renameSync(tempPath, path);
  } catch (error) {
    if (fd !== undefined) fs.closeSync(fd);
    fs.rmSync(tempPath, { force: true });
    const reason = error instanceof Error ? error.message : String(error);
    throw new Error(`${path}: ${what} not written (any previous file is left as it was): ${reason}`, { cause: error });
  }
  fsyncFolder(folder, what);
}

/** Writes `data` (bytes, or text as UTF-8) to `path` atomically; `what` names the file in errors. */
export function writeBytesAtomic(path: string, data: Uint8Array | string, what: string): void {
  writeFileAtomic(path, () => [typeof data === 'string' ? Buffer.from(data, 'utf8') : data], what);
}

function fsyncFolder(folder: string, what: string): void {
  let fd: number | undefined;
  try {
    fd = fs.openSync(folder, 'r');
    fs.fsyncSync(fd);
  } catch (error) {
    // Some platforms (Windows) and file systems cannot fsync a folder; the rename has still happened.
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== 'EISDIR' && code !== 'EINVAL' && code !== 'EPERM' && code !== 'EBADF') {
      throw new Error(`${folder}: ${what} renamed into place but the folder could not be synced (${(error as Error).message}); check the disk`, { cause: error });
    }
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}
