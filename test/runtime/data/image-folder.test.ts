import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import sharp from 'sharp';
import { BadImageError, loadImageFolder } from '../../../runtime/data/image-folder.ts';
import { wordError } from '../../../cli/errors.ts';
import { checkDataset, imageAt } from '../../../runtime/data/dataset.ts';

type Rgb = [number, number, number];

async function writeSolid(file: string, color: Rgb, width: number, height: number, format: 'png' | 'jpeg' | 'webp'): Promise<void> {
  await fs.mkdir(path.dirname(file), { recursive: true });
  const image = sharp({ create: { width, height, channels: 3, background: { r: color[0], g: color[1], b: color[2] } } });
  const encoded = format === 'png' ? image.png() : format === 'jpeg' ? image.jpeg({ quality: 95 }) : image.webp({ lossless: true });
  await encoded.toFile(file);
}

async function withTempDir(body: (dir: string) => Promise<void>): Promise<void> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'image-folder-'));
  try {
    await body(dir);
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}

const RED: Rgb = [255, 0, 0];
const BLUE: Rgb = [0, 0, 255];
const GRAY: Rgb = [100, 100, 100];

/** Mean of each channel of an image (bytes), in [0, 1]. */
function channelMeans(pixels: Uint8Array, channels: number): number[] {
  const plane = pixels.length / channels;
  return Array.from({ length: channels }, (_, c) => pixels.subarray(c * plane, (c + 1) * plane).reduce((s, v) => s + v, 0) / plane / 255);
}

test('class sub-folders: sorted classes, labels, resize, RGB values, deterministic every-10th split', async () => {
  await withTempDir(async (root) => {
    // 'Zebra' sorts before 'apple' by code unit, as Python's sorted() and torchvision's ImageFolder do.
    for (let i = 0; i < 12; i++) await writeSolid(path.join(root, 'apple', `img${String(i).padStart(2, '0')}.png`), RED, 40 + i, 30, 'png');
    await writeSolid(path.join(root, 'Zebra', 'a.jpg'), BLUE, 20, 50, 'jpeg');
    await writeSolid(path.join(root, 'Zebra', 'nested', 'b.webp'), BLUE, 64, 64, 'webp');
    await fs.writeFile(path.join(root, 'apple', '.DS_Store'), 'hidden files are ignored');
    const { dataset, skipped } = await loadImageFolder(root, { imageSize: 16 });
    checkDataset(dataset);
    assert.equal(skipped, []);
    assert.equal(dataset.classes, ['Zebra', 'apple']);
    assert.equal([dataset.channels, dataset.height, dataset.width], [3, 16, 16]);
    assert.is(dataset.name, path.basename(root));
    // 'apple' has 12 files: the 10th (img09) is test; 'Zebra' has 2: both train.
    assert.is(dataset.train.count, 13);
    assert.is(dataset.test.count, 1);
    assert.equal(Array.from(dataset.train.labels), [0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]);
    assert.equal(Array.from(dataset.test.labels), [1]);
    const blue = channelMeans(imageAt(dataset, dataset.train, 0), 3);
    assert.ok(blue[0]! < 0.02 && blue[1]! < 0.02 && blue[2]! > 0.98, `blue jpeg ${blue}`);
    const red = channelMeans(imageAt(dataset, dataset.train, 5), 3);
    assert.ok(Math.abs(red[0]! - 1) < 1e-6 && red[1] === 0 && red[2] === 0, `red png ${red}`);
  });
});

test('1 channel: luminance; a flat folder gives label -1 and no classes', async () => {
  await withTempDir(async (root) => {
    await writeSolid(path.join(root, 'one.png'), GRAY, 10, 10, 'png');
    await writeSolid(path.join(root, 'two.png'), RED, 12, 9, 'png');
    const { dataset } = await loadImageFolder(root, { imageSize: 8, channels: 1 });
    assert.equal(dataset.classes, []);
    assert.is(dataset.channels, 1);
    assert.equal(Array.from(dataset.train.labels), [-1, -1]);
    assert.is(dataset.test.count, 0);
    const gray = channelMeans(imageAt(dataset, dataset.train, 0), 1)[0]!;
    assert.ok(Math.abs(gray - 100 / 255) < 1.5 / 255, `gray ${gray * 255}`);
    const redLuma = channelMeans(imageAt(dataset, dataset.train, 1), 1)[0]!;
    assert.is(imageAt(dataset, dataset.train, 1)[0], 76); // PIL's convert('L'): round(255 * 0.299)
  });
});

test('train/ and val/ folders are the splits; classes are the union of both', async () => {
  await withTempDir(async (root) => {
    await writeSolid(path.join(root, 'train', 'cat', '1.png'), RED, 8, 8, 'png');
    await writeSolid(path.join(root, 'train', 'cat', '2.png'), RED, 8, 8, 'png');
    await writeSolid(path.join(root, 'train', 'dog', '1.png'), BLUE, 8, 8, 'png');
    await writeSolid(path.join(root, 'val', 'dog', '1.png'), BLUE, 8, 8, 'png');
    await writeSolid(path.join(root, 'val', 'emu', '1.png'), GRAY, 8, 8, 'png');
    const { dataset } = await loadImageFolder(root, { imageSize: 4 });
    assert.equal(dataset.classes, ['cat', 'dog', 'emu']);
    assert.equal(Array.from(dataset.train.labels), [0, 0, 1]);
    assert.equal(Array.from(dataset.test.labels), [1, 2]);
  });
});

async function expectLoadError(root: string, file: string): Promise<void> {
  try {
    await loadImageFolder(root, { imageSize: 8 });
    assert.unreachable(`loading should fail on ${file}`);
  } catch (error) {
    assert.instance(error, BadImageError);
    const message = (error as Error).message;
    assert.ok(message.includes(file), `message names the file: ${message}`);
    assert.ok(message.includes('skipBadImages'), `message gives the remedy: ${message}`);
    // the CLI words the remedy with its flag
    assert.ok(wordError(error).includes(file) && wordError(error).includes('--skip-bad-images'), `CLI message: ${wordError(error)}`);
  }
}

test('corrupt, truncated, empty and non-image files stop loading, naming the file; skip mode skips and counts them', async () => {
  await withTempDir(async (root) => {
    for (let i = 0; i < 3; i++) await writeSolid(path.join(root, 'good', `${i}.png`), RED, 20, 20, 'png');
    const png = await fs.readFile(path.join(root, 'good', '0.png'));
    const jpeg = await sharp({ create: { width: 64, height: 64, channels: 3, background: { r: 9, g: 99, b: 199 } } }).jpeg().toBuffer();
    const bad: Array<[string, Buffer]> = [
      [path.join(root, 'bad', 'truncated.png'), png.subarray(0, png.length - 20)],
      [path.join(root, 'bad', 'truncated.jpg'), jpeg.subarray(0, Math.floor(jpeg.length / 2))],
      [path.join(root, 'bad', 'garbage.png'), Buffer.from(png.map((b, i) => (i < 16 ? b : (b * 31 + i) & 255)))],
      [path.join(root, 'bad', 'empty.png'), Buffer.alloc(0)],
      [path.join(root, 'bad', 'notes.txt'), Buffer.from('this is a text file, not an image\n')],
    ];
    await fs.mkdir(path.join(root, 'bad'));
    for (const [file, bytes] of bad) {
      await fs.writeFile(file, bytes);
      await expectLoadError(root, file);
      await fs.rm(file);
    }
    for (const [file, bytes] of bad) await fs.writeFile(file, bytes);
    const { dataset, skipped } = await loadImageFolder(root, { imageSize: 8, skipBadImages: true });
    assert.is(dataset.train.count + dataset.test.count, 3);
    assert.equal(skipped.map((s) => s.file).sort(), bad.map(([file]) => file).sort());
    assert.ok(skipped.find((s) => s.file.endsWith('empty.png'))!.reason.includes('empty'));
    assert.equal(dataset.classes, ['bad', 'good']); // the class stays even though all its images were skipped
    assert.ok(Array.from(dataset.train.labels).every((l) => l === 1));
  });
});

test('a missing or image-less folder is an Error naming it', async () => {
  await withTempDir(async (root) => {
    const missing = path.join(root, 'nope');
    const messageOf = async (folder: string) => loadImageFolder(folder).then(() => 'no error', (e: Error) => e.message);
    assert.ok((await messageOf(missing)).includes(missing));
    await fs.mkdir(path.join(root, 'empty-class'));
    const message = await messageOf(root);
    assert.ok(message.includes(root) && message.includes('no image'), message);
  });
});

test.run();
