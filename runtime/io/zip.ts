// A minimal ZIP reader for PyTorch checkpoints: central directory (ZIP64 included), stored and
// deflated entries, CRC-32 checked. Stored entries are returned as views over the archive bytes.
//
// Sizes come from the central directory only: PyTorch's writer sets the "data descriptor" flag and
// leaves sizes in the local headers at zero.

import * as zlib from 'node:zlib';

export type ZipEntry = {
  name: string;
  method: number;
  flags: number;
  crc32: number;
  compressedSize: number;
  uncompressedSize: number;
  localHeaderOffset: number;
};

const EOCD_SIGNATURE = 0x06054b50;
const ZIP64_LOCATOR_SIGNATURE = 0x07064b50;
const ZIP64_EOCD_SIGNATURE = 0x06064b50;
const CENTRAL_SIGNATURE = 0x02014b50;
const LOCAL_SIGNATURE = 0x04034b50;

export const ZIP_MAGIC = [0x50, 0x4b, 0x03, 0x04]; // "PK\3\4"

export class ZipError extends Error {}

function u64(view: DataView, at: number): number {
  const value = view.getBigUint64(at, true);
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw new ZipError(`a ZIP64 field holds ${value}, beyond any real file size`);
  return Number(value);
}

/** Entries of the archive by name. Throws ZipError (without the file name) on a malformed archive. */
export function readZipDirectory(bytes: Uint8Array): Map<string, ZipEntry> {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const need = (at: number, length: number, what: string): void => {
    if (at < 0 || at + length > bytes.length) throw new ZipError(`${what} at byte ${at} lies beyond the end of the file (${bytes.length} bytes)`);
  };

  // The end-of-central-directory record is the last 22 bytes plus a comment of up to 65535 bytes.
  let eocd = -1;
  for (let at = bytes.length - 22; at >= Math.max(0, bytes.length - 22 - 0xffff); at--) {
    if (view.getUint32(at, true) === EOCD_SIGNATURE) {
      eocd = at;
      break;
    }
  }
  if (eocd < 0) throw new ZipError('no ZIP end-of-central-directory record at the end of the file');

  let entryCount: number = view.getUint16(eocd + 10, true);
  let directorySize: number = view.getUint32(eocd + 12, true);
  let directoryOffset: number = view.getUint32(eocd + 16, true);
  if (entryCount === 0xffff || directorySize === 0xffffffff || directoryOffset === 0xffffffff) {
    const locator = eocd - 20;
    need(locator, 20, 'the ZIP64 locator');
    if (view.getUint32(locator, true) !== ZIP64_LOCATOR_SIGNATURE) throw new ZipError('the ZIP64 end-of-central-directory locator is missing');
    const record = u64(view, locator + 8);
    need(record, 56, 'the ZIP64 end-of-central-directory record');
    if (view.getUint32(record, true) !== ZIP64_EOCD_SIGNATURE) throw new ZipError('the ZIP64 end-of-central-directory record is missing');
    entryCount = u64(view, record + 32);
    directorySize = u64(view, record + 40);
    directoryOffset = u64(view, record + 48);
  }
  need(directoryOffset, directorySize, 'the central directory');

  const entries = new Map<string, ZipEntry>();
  let at = directoryOffset;
  for (let i = 0; i < entryCount; i++) {
    need(at, 46, 'a central directory entry');
    if (view.getUint32(at, true) !== CENTRAL_SIGNATURE) throw new ZipError(`central directory entry ${i} has a bad signature`);
    const nameLength = view.getUint16(at + 28, true);
    const extraLength = view.getUint16(at + 30, true);
    const commentLength = view.getUint16(at + 32, true);
    need(at + 46, nameLength + extraLength, 'a central directory entry name');
    const name = new TextDecoder().decode(bytes.subarray(at + 46, at + 46 + nameLength));
    const entry: ZipEntry = {
      name,
      flags: view.getUint16(at + 8, true),
      method: view.getUint16(at + 10, true),
      crc32: view.getUint32(at + 16, true),
      compressedSize: view.getUint32(at + 20, true),
      uncompressedSize: view.getUint32(at + 24, true),
      localHeaderOffset: view.getUint32(at + 42, true),
    };
    // ZIP64 extended information: 64-bit values for the fields saturated at 0xffffffff, in this order.
    let extra = at + 46 + nameLength;
    const extraEnd = extra + extraLength;
    while (extra + 4 <= extraEnd) {
      const id = view.getUint16(extra, true);
      const size = view.getUint16(extra + 2, true);
      if (id === 0x0001) {
        let field = extra + 4;
        if (entry.uncompressedSize === 0xffffffff) { entry.uncompressedSize = u64(view, field); field += 8; }
        if (entry.compressedSize === 0xffffffff) { entry.compressedSize = u64(view, field); field += 8; }
        if (entry.localHeaderOffset === 0xffffffff) { entry.localHeaderOffset = u64(view, field); field += 8; }
      }
      extra += 4 + size;
    }
    entries.set(name, entry);
    at += 46 + nameLength + extraLength + commentLength;
  }
  return entries;
}

/** The uncompressed content of one entry: a view for stored entries, a new buffer for deflated ones. */
export function readZipEntry(bytes: Uint8Array, entry: ZipEntry): Uint8Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const header = entry.localHeaderOffset;
  if (header + 30 > bytes.length || view.getUint32(header, true) !== LOCAL_SIGNATURE) {
    throw new ZipError(`entry "${entry.name}": its local header at byte ${header} is missing`);
  }
  if (entry.flags & 0x1) throw new ZipError(`entry "${entry.name}" is encrypted`);
  const start = header + 30 + view.getUint16(header + 26, true) + view.getUint16(header + 28, true);
  if (start + entry.compressedSize > bytes.length) {
    throw new ZipError(`entry "${entry.name}" needs bytes ${start}..${start + entry.compressedSize} but the file has ${bytes.length}`);
  }
  const raw = bytes.subarray(start, start + entry.compressedSize);
  let content: Uint8Array;
  if (entry.method === 0) {
    content = raw;
  } else if (entry.method === 8) {
    try {
      content = zlib.inflateRawSync(raw);
    } catch (error) {
      throw new ZipError(`entry "${entry.name}" does not inflate: ${(error as Error).message}`);
    }
  } else {
    throw new ZipError(`entry "${entry.name}" uses compression method ${entry.method}; only stored (0) and deflate (8) are supported`);
  }
  if (content.length !== entry.uncompressedSize) {
    throw new ZipError(`entry "${entry.name}" holds ${content.length} bytes but the directory says ${entry.uncompressedSize}`);
  }
  if (zlib.crc32(content) >>> 0 !== entry.crc32 >>> 0) throw new ZipError(`entry "${entry.name}" fails its CRC-32 check`);
  return content;
}
