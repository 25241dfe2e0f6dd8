/** What the loader tests share: the first batches of a loader, and a bit-for-bit comparison of two runs of batches. */
import * as assert from 'uvu/assert';
import { MultiCropLoader, type LoaderBatch, type LoaderOptions } from '../../../runtime/data/loader.ts';

/** The first `n` batches of a loader made with `options` (closed afterwards). */
export async function take(options: LoaderOptions, n: number): Promise<LoaderBatch[]> {
  const loader = new MultiCropLoader(options);
  try {
    const batches: LoaderBatch[] = [];
    for (let i = 0; i < n; i++) batches.push(await loader.next());
    return batches;
  } finally {
    await loader.close();
  }
}

/** The same positions, images, labels and crops, the crops compared byte for byte (bit-identical floats). */
export function assertSameBatches(a: LoaderBatch[], b: LoaderBatch[], label: string): void {
  assert.is(a.length, b.length);
  a.forEach((x, i) => {
    const y = b[i]!;
    assert.equal([x.epoch, x.batch, x.step], [y.epoch, y.batch, y.step], `${label}: position of batch ${i}`);
    assert.equal(x.indices, y.indices, `${label}: indices of batch ${i}`);
    assert.equal(x.labels, y.labels, `${label}: labels of batch ${i}`);
    assert.ok(Buffer.from(x.globals.buffer).equals(Buffer.from(y.globals.buffer)), `${label}: globals of batch ${i}`);
    assert.ok(Buffer.from(x.locals.buffer).equals(Buffer.from(y.locals.buffer)), `${label}: locals of batch ${i}`);
  });
}
