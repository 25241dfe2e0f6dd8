// A minimal ZIP writer for PyTorch checkpoints: STORED entries only (torch.save never compresses), each
// entry's data aligned to 64 bytes as torch's writer does so that loaders can map tensors in place, sizes and
// CRC-32 in the local headers (no data descriptors), ZIP64 records where a size or offset needs them.
//
// The archive is returned as a list of chunks in file order; entry data is referenced, not copied, so a
// large state is never held twice in memory.

import * as zlib from 'node:zlib';

export type ZipWriteEntry = {
  readonly name: string;
  readonly data: Uint8Array;
};

export type ZipWriteOptions = {
  /** Data of every entry starts at a multiple of this many bytes (torch: 64). Default 64. */
  readonly alignment?: number;
  /** Write ZIP64 fields even when the sizes fit in 32 bits (tests exercise the >4 GiB layout this way). */
  readonly forceZip64?: boolean;
};

const LOCAL_SIGNATURE = 0x04034b50;
const CENTRAL_SIGNATURE = 0x02014b50;
const EOCD_SIGNATURE = 0x06054b50;
const ZIP64_EOCD_SIGNATURE = 0x06064b50;
const ZIP64_LOCATOR_SIGNATURE = 0x07064b50;
/** The extra-field id torch's writer uses for its alignment padding ("FB"); readers skip unknown ids. */
const PADDING_EXTRA_ID = 0x4246;
const ZIP64_EXTRA_ID = 0x0001;
const MAX_U32 = 0xffffffff;
const MAX_U16 = 0xffff;
/** Bit 11: names are UTF-8. */
const FLAG_UTF8 = 0x0800;
/** 1980-01-01 00:00 (the DOS epoch): a fixed, valid timestamp keeps the archive byte-reproducible. */
const DOS_DATE = (0 << 9) | (1 << 5) | 1;
const DOS_TIME = 0;

function u64(view: DataView, at: number, value: number): void {
  view.setBigUint64(at, BigInt(value), true);
}

/** The ZIP archive holding `entries` (in this order), as chunks in file order. */
export function zipChunks(entries: readonly ZipWriteEntry[], options: ZipWriteOptions = {}): Uint8Array[] {
  const alignment = options.alignment ?? 64;
  if (!Number.isInteger(alignment) || alignment < 1) throw new Error(`zip: alignment must be a positive integer, got ${alignment}`);
  const force = options.forceZip64 ?? false;
  const encoder = new TextEncoder();
  const chunks: Uint8Array[] = [];
  const central: Uint8Array[] = [];
  const seen = new Set<string>();
  let offset = 0;

  for (const entry of entries) {
    if (seen.has(entry.name)) throw new Error(`zip: entry "${entry.name}" is written twice`);
    seen.add(entry.name);
    const name = encoder.encode(entry.name);
    if (name.length > MAX_U16) throw new Error(`zip: entry name "${entry.name.slice(0, 40)}..." is longer than 65535 bytes`);
    const size = entry.data.length;
    const crc = zlib.crc32(entry.data) >>> 0;
    const localZip64 = force || size >= MAX_U32;
    const centralSize64 = force || size >= MAX_U32;
    const centralOffset64 = force || offset >= MAX_U32;

    // Local header: fixed part, name, ZIP64 sizes if needed, then padding up to the aligned data start.
    const zip64Local = localZip64 ? 4 + 16 : 0;
    const unpadded = offset + 30 + name.length + zip64Local + 4;
    const padding = (alignment - (unpadded % alignment)) % alignment;
    const extraLength = zip64Local + 4 + padding;
    const header = new Uint8Array(30 + name.length + extraLength);
    const h = new DataView(header.buffer);
    h.setUint32(0, LOCAL_SIGNATURE, true);
    h.setUint16(4, localZip64 ? 45 : 20, true); // version needed to extract
    h.setUint16(6, FLAG_UTF8, true);
    h.setUint16(8, 0, true); // method: stored
    h.setUint16(10, DOS_TIME, true);
    h.setUint16(12, DOS_DATE, true);
    h.setUint32(14, crc, true);
    h.setUint32(18, localZip64 ? MAX_U32 : size, true);
    h.setUint32(22, localZip64 ? MAX_U32 : size, true);
    h.setUint16(26, name.length, true);
    h.setUint16(28, extraLength, true);
    header.set(name, 30);
    let at = 30 + name.length;
    if (localZip64) {
      h.setUint16(at, ZIP64_EXTRA_ID, true);
      h.setUint16(at + 2, 16, true);
      u64(h, at + 4, size); // uncompressed
      u64(h, at + 12, size); // compressed
      at += 20;
    }
    h.setUint16(at, PADDING_EXTRA_ID, true);
    h.setUint16(at + 2, padding, true);
    header.fill(0x5a, at + 4); // 'Z', as torch pads
    chunks.push(header, entry.data);

    // Central directory record: ZIP64 values only for the fields saturated at 0xffffffff, in the order the spec fixes.
    const zip64Central = (centralSize64 ? 16 : 0) + (centralOffset64 ? 8 : 0);
    const centralExtra = zip64Central > 0 ? 4 + zip64Central : 0;
    const record = new Uint8Array(46 + name.length + centralExtra);
    const c = new DataView(record.buffer);
    c.setUint32(0, CENTRAL_SIGNATURE, true);
    c.setUint16(4, zip64Central > 0 ? 45 : 20, true); // version made by (MS-DOS attributes)
    c.setUint16(6, zip64Central > 0 ? 45 : 20, true); // version needed
    c.setUint16(8, FLAG_UTF8, true);
    c.setUint16(10, 0, true);
    c.setUint16(12, DOS_TIME, true);
    c.setUint16(14, DOS_DATE, true);
    c.setUint32(16, crc, true);
    c.setUint32(20, centralSize64 ? MAX_U32 : size, true);
    c.setUint32(24, centralSize64 ? MAX_U32 : size, true);
    c.setUint16(28, name.length, true);
    c.setUint16(30, centralExtra, true);
    // comment length, disk number, internal and external attributes: 0
    c.setUint32(42, centralOffset64 ? MAX_U32 : offset, true);
    record.set(name, 46);
    if (zip64Central > 0) {
      let e = 46 + name.length;
      c.setUint16(e, ZIP64_EXTRA_ID, true);
      c.setUint16(e + 2, zip64Central, true);
      e += 4;
      if (centralSize64) {
        u64(c, e, size);
        u64(c, e + 8, size);
        e += 16;
      }
      if (centralOffset64) u64(c, e, offset);
    }
    central.push(record);
    offset += header.length + size;
  }

  const directoryOffset = offset;
  const directorySize = central.reduce((n, r) => n + r.length, 0);
  chunks.push(...central);
  const count = entries.length;
  const endZip64 = force || count >= MAX_U16 || directorySize >= MAX_U32 || directoryOffset >= MAX_U32;
  if (endZip64) {
    const record64At = directoryOffset + directorySize;
    const tail = new Uint8Array(56 + 20);
    const t = new DataView(tail.buffer);
    t.setUint32(0, ZIP64_EOCD_SIGNATURE, true);
    u64(t, 4, 56 - 12); // size of the rest of this record
    t.setUint16(12, 45, true);
    t.setUint16(14, 45, true);
    // this disk, disk with the directory: 0
    u64(t, 24, count);
    u64(t, 32, count);
    u64(t, 40, directorySize);
    u64(t, 48, directoryOffset);
    t.setUint32(56, ZIP64_LOCATOR_SIGNATURE, true);
    // disk with the ZIP64 record: 0
    u64(t, 64, record64At);
    t.setUint32(72, 1, true); // total disks
    chunks.push(tail);
  }
  const end = new Uint8Array(22);
  const d = new DataView(end.buffer);
  d.setUint32(0, EOCD_SIGNATURE, true);
  d.setUint16(8, endZip64 ? MAX_U16 : count, true);
  d.setUint16(10, endZip64 ? MAX_U16 : count, true);
  d.setUint32(12, endZip64 ? MAX_U32 : directorySize, true);
  d.setUint32(16, endZip64 ? MAX_U32 : directoryOffset, true);
  chunks.push(end);
  return chunks;
}

/** Concatenated chunks. */
export function concatChunks(chunks: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

/** The whole archive in one buffer. */
export function encodeZip(entries: readonly ZipWriteEntry[], options: ZipWriteOptions = {}): Uint8Array {
  return concatChunks(zipChunks(entries, options));
}
