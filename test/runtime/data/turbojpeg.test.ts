/**
 * JPEG decoding on the calling thread (runtime/data/turbojpeg.ts, the system's libjpeg-turbo): the same pixels as
 * sharp's decode for every kind of plain JPEG, and everything else (EXIF rotation, ICC profile, CMYK, a damaged file,
 * not a JPEG) left to sharp. Skipped, with the reason printed, where libturbojpeg.so.0 is not installed (.ci/run
 * installs it: Debian's libturbojpeg0).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import sharp, { type JpegOptions } from 'sharp';
import { decodeImageBytes } from '../../../runtime/data/decode.ts';
import { decodeJpegHere, plainJpeg, turboJpegAvailable } from '../../../runtime/data/turbojpeg.ts';

/** A photo-like RGB test image: gradients and noise, so chroma subsampling and the IDCT matter. */
function pixels(width: number, height: number, seed: number): Buffer {
  const px = Buffer.alloc(width * height * 3);
  let s = seed;
  for (let i = 0; i < px.length; i++) {
    s = (s * 1103515245 + 12345) >>> 0;
    const p = i / 3 | 0, x = p % width, y = p / width | 0, c = i % 3;
    px[i] = Math.max(0, Math.min(255, 128 + 90 * Math.sin(x * 0.07 * (c + 1) + y * 0.05) + ((s >>> 24) - 128) * 0.3));
  }
  return px;
}
/** `bytes` with an EXIF segment (APP1) holding only the Orientation tag, right after the start-of-image marker. */
function withOrientation(bytes: Uint8Array, orientation: number): Uint8Array {
  const tiff = [0x49, 0x49, 0x2a, 0x00, 8, 0, 0, 0, 1, 0, 0x12, 0x01, 3, 0, 1, 0, 0, 0, orientation, 0, 0, 0, 0, 0, 0, 0];
  const body = [...Buffer.from('Exif\0\0', 'latin1'), ...tiff];
  const segment = [0xff, 0xe1, (body.length + 2) >> 8, (body.length + 2) & 255, ...body];
  return new Uint8Array([...bytes.subarray(0, 2), ...segment, ...bytes.subarray(2)]);
}
const jpeg = async (options: JpegOptions, width = 123, height = 77, gray = false) => {
  let image = sharp(pixels(width, height, width + height), { raw: { width, height, channels: 3 } });
  if (gray) image = image.toColourspace('b-w');
  return new Uint8Array(await image.jpeg(options).toBuffer());
};

test('plainJpeg: only JPEGs whose samples are the pixels (no EXIF rotation, no ICC profile)', async () => {
  const plain = await jpeg({ quality: 90 });
  assert.ok(plainJpeg(plain));
  assert.ok(plainJpeg(withOrientation(plain, 1)), 'orientation 1 is plain');
  assert.not.ok(plainJpeg(withOrientation(plain, 6)), 'orientation 6 needs a rotation');
  assert.is((await sharp(withOrientation(plain, 6)).metadata()).orientation, 6, 'the test segment is read as EXIF');
  assert.not.ok(plainJpeg(new Uint8Array(await sharp(plain).withIccProfile('p3').jpeg().toBuffer())), 'an ICC profile');
  assert.not.ok(plainJpeg(new Uint8Array(await sharp(pixels(8, 8, 1), { raw: { width: 8, height: 8, channels: 3 } }).png().toBuffer())), 'a PNG');
  assert.not.ok(plainJpeg(plain.subarray(0, 40)), 'cut before its first scan');
});

if (!turboJpegAvailable()) {
  console.log('skipping the libjpeg-turbo decode tests: libturbojpeg.so.0 not installed (apt-get install libturbojpeg0); JPEGs decode through sharp');
} else {
  test('plain JPEGs (4:2:0, 4:4:4, progressive, gray, odd sizes) decode to the same pixels as sharp', async () => {
    const cases: [string, Uint8Array][] = [
      ['4:2:0 q90', await jpeg({ quality: 90 })],
      ['4:4:4 q75', await jpeg({ quality: 75, chromaSubsampling: '4:4:4' })],
      ['progressive', await jpeg({ quality: 85, progressive: true }, 64, 200)],
      ['gray', await jpeg({ quality: 90 }, 33, 17, true)],
      ['1 x 1', await jpeg({ quality: 90 }, 1, 1)],
    ];
    for (const [name, bytes] of cases) {
      const here = decodeJpegHere(bytes);
      assert.ok(here !== null, `${name}: decoded here`);
      const viaSharp = await decodeImageBytes(bytes, 3);
      assert.equal([here!.width, here!.height], [viaSharp.width, viaSharp.height], name);
      assert.ok(Buffer.from(here!.data).equals(Buffer.from(viaSharp.data)), `${name}: pixels differ from sharp's`);
      const gray = await decodeImageBytes(bytes, 1, { callingThread: true });
      assert.equal(gray.data, (await decodeImageBytes(bytes, 1)).data, `${name}: luma`);
    }
  });

  test('CMYK, rotated and damaged JPEGs are left to sharp: rotated as before, a damaged one an error', async () => {
    const cmyk = new Uint8Array(await sharp(pixels(40, 30, 3), { raw: { width: 40, height: 30, channels: 3 } }).toColourspace('cmyk').jpeg().toBuffer());
    assert.is(decodeJpegHere(cmyk), null);
    assert.equal((await decodeImageBytes(cmyk, 3, { callingThread: true })).data, (await decodeImageBytes(cmyk, 3)).data);
    const rotated = withOrientation(await jpeg({ quality: 90 }), 6);
    assert.is(decodeJpegHere(rotated), null);
    const upright = await decodeImageBytes(rotated, 3, { callingThread: true });
    assert.equal([upright.width, upright.height], [77, 123], 'EXIF orientation 6 applied (by sharp)');
    const plain = await jpeg({ quality: 90 });
    const truncated = plain.subarray(0, plain.length >> 1);
    assert.is(decodeJpegHere(truncated), null, 'libjpeg-turbo warns of the premature end: left to sharp');
    const message = await decodeImageBytes(truncated, 3, { callingThread: true }).then(() => 'decoded', (e: Error) => e.message);
    assert.not.equal(message, 'decoded');
  });
}

test.run();
