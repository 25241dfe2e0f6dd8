import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { FASHION_MNIST_VAL_PER_CLASS, loadFashionMnist } from '../../../runtime/data/fashion-mnist.ts';
import { checkDataset, holdOutPerClass, imageAt } from '../../../runtime/data/dataset.ts';

const full = await loadFashionMnist();
const val = await loadFashionMnist({ split: 'val' });

function countPerClass(labels: Int32Array): number[] {
  const counts = new Array<number>(10).fill(0);
  for (const l of labels) counts[l] = counts[l]! + 1;
  return counts;
}

test("split 'val': 55,000 train / 5,000 val, class-balanced, the last 500 train images of each class", () => {
  checkDataset(val);
  assert.is(FASHION_MNIST_VAL_PER_CLASS, 500);
  assert.is(val.train.count, 55000);
  assert.is(val.test.count, 5000);
  assert.equal(countPerClass(val.train.labels), new Array(10).fill(5500));
  assert.equal(countPerClass(val.test.labels), new Array(10).fill(500));
  for (let c = 0; c < 10; c++) {
    // file order within each class: train keeps rows 0..5499 of the class, val gets 5500..5999
    assert.equal(imageAt(val, val.train, c * 5500), imageAt(full, full.train, c * 6000));
    assert.equal(imageAt(val, val.train, c * 5500 + 5499), imageAt(full, full.train, c * 6000 + 5499));
    assert.equal(imageAt(val, val.test, c * 500), imageAt(full, full.train, c * 6000 + 5500));
    assert.equal(imageAt(val, val.test, c * 500 + 499), imageAt(full, full.train, c * 6000 + 5999));
  }
});

test("split 'val' is disjoint from its train part and never holds a test image", () => {
  const key = (b: Uint8Array) => Buffer.from(b).toString('base64');
  const trainKeys = new Set<string>();
  for (let i = 0; i < val.train.count; i++) trainKeys.add(key(imageAt(val, val.train, i)));
  const testKeys = new Set<string>();
  for (let i = 0; i < full.test.count; i++) testKeys.add(key(imageAt(full, full.test, i)));
  // Fashion-MNIST has a few exact duplicate images across rows; count overlaps by row identity instead of content
  // where content collides: each val row must be a train row of the full split at its expected position (above),
  // so content overlap with the test split can only come from such duplicates.
  let overlapTrain = 0, overlapTest = 0;
  for (let i = 0; i < val.test.count; i++) {
    const k = key(imageAt(val, val.test, i));
    if (trainKeys.has(k)) overlapTrain++;
    if (testKeys.has(k)) overlapTest++;
  }
  assert.ok(overlapTrain <= 5, `${overlapTrain} val images equal a train image`);
  assert.ok(overlapTest <= 5, `${overlapTest} val images equal a test image`);
  assert.is(val.train.count + val.test.count, full.train.count);
});

test("split 'val' is deterministic and limitPerClass applies after the split", async () => {
  const again = await loadFashionMnist({ split: 'val' });
  assert.equal(again.test.labels, val.test.labels);
  assert.ok(Buffer.from(again.test.pixels).equals(Buffer.from(val.test.pixels)));
  const small = await loadFashionMnist({ split: 'val', limitPerClass: 20 });
  assert.is(small.train.count, 200);
  assert.is(small.test.count, 200);
  assert.equal(imageAt(small, small.test, 20), imageAt(full, full.train, 6000 + 5500));
});

test('holdOutPerClass: last perClass of each class in any label order; unlabelled stay; too few is an error', () => {
  const shape = { channels: 1, height: 1, width: 1, classes: ['a', 'b'] };
  const labels = Int32Array.from([0, 1, -1, 0, 1, 0, 1, 1]);
  const set = { count: 8, pixels: Uint8Array.from([0, 1, 2, 3, 4, 5, 6, 7]), labels };
  const { rest, heldOut } = holdOutPerClass(shape, set, 1);
  assert.equal([...heldOut.pixels], [5, 7]);
  assert.equal([...heldOut.labels], [0, 1]);
  assert.equal([...rest.pixels], [0, 1, 2, 3, 4, 6]);
  assert.equal([...rest.labels], [0, 1, -1, 0, 1, 1]);
  assert.throws(() => holdOutPerClass(shape, set, 3), /class 0 has 3 images/);
});

test.run();
