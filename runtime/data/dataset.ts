/**
 * The in-memory image dataset every loader in runtime/data produces and the multi-crop loader consumes.
 *
 * Pixels are stored as bytes (0-255), channel-first (N, C, H, W), all images of a dataset the same size: every
 * source is 8-bit, and bytes take a quarter of float32's memory (Fashion-MNIST: 52 MiB instead of 209 MiB, held
 * by every training process). Consumers read float32 in [0, 1] = byte / 255 through {@link gatherImages}.
 * Normalisation (mean/std) is not applied here: it is the last step of augmentation (DINO's `Normalize`).
 */

/** One split (train or test) of a dataset. */
export interface ImageSet {
  /** Number of images. */
  readonly count: number;
  /** `count * channels * height * width` bytes (0-255), image-major then channel-first (N, C, H, W). */
  readonly pixels: Uint8Array;
  /** One class index per image, in `[0, classes.length)`, or -1 when the image has no label. */
  readonly labels: Int32Array;
}

/** A dataset: two splits of equally sized images plus the class names that labels index into. */
export interface Dataset {
  /** Short human-readable name, e.g. `fashion-mnist` or the folder's base name. */
  readonly name: string;
  /** 1 (grayscale) or 3 (RGB). */
  readonly channels: number;
  readonly height: number;
  readonly width: number;
  readonly train: ImageSet;
  readonly test: ImageSet;
  /** Class names; `labels` index into this list. Empty when no image is labelled. */
  readonly classes: string[];
}

/** Values per image: `channels * height * width`. */
export function imageSize(dataset: Pick<Dataset, 'channels' | 'height' | 'width'>): number {
  return dataset.channels * dataset.height * dataset.width;
}

/**
 * A view of image `index` of `set`: its bytes (no copy).
 * @throws RangeError when `index` is outside `[0, set.count)`.
 */
export function imageAt(
  dataset: Pick<Dataset, 'channels' | 'height' | 'width'>,
  set: ImageSet,
  index: number,
): Uint8Array {
  if (!Number.isInteger(index) || index < 0 || index >= set.count) {
    throw new RangeError(`image index ${index} is outside [0, ${set.count})`);
  }
  const size = imageSize(dataset);
  return set.pixels.subarray(index * size, (index + 1) * size);
}

/**
 * Images `indices` of `set` as float32 in [0, 1] (byte / 255), packed (N, C, H, W) into `out` (allocated when
 * not given; it must hold `indices.length` images).
 */
export function gatherImages(
  dataset: Pick<Dataset, 'channels' | 'height' | 'width'>,
  set: Pick<ImageSet, 'count' | 'pixels'>,
  indices: ArrayLike<number>,
  out?: Float32Array,
): Float32Array {
  const size = imageSize(dataset);
  const result = out ?? new Float32Array(indices.length * size);
  if (result.length < indices.length * size) throw new RangeError(`output holds ${result.length} values, ${indices.length} images need ${indices.length * size}`);
  for (let i = 0; i < indices.length; i++) {
    const index = indices[i]!;
    if (!Number.isInteger(index) || index < 0 || index >= set.count) throw new RangeError(`image index ${index} is outside [0, ${set.count})`);
    const src = index * size, dst = i * size;
    for (let k = 0; k < size; k++) result[dst + k] = set.pixels[src + k]! / 255;
  }
  return result;
}

/**
 * Checks that a dataset is internally consistent (array lengths match `count` and the image size,
 * labels are -1 or valid class indices) and returns it; throws an Error naming the first problem.
 */
export function checkDataset(dataset: Dataset): Dataset {
  const { channels, height, width } = dataset;
  if (channels !== 1 && channels !== 3) throw new Error(`${dataset.name}: channels must be 1 or 3, got ${channels}`);
  if (!(height > 0 && width > 0)) throw new Error(`${dataset.name}: image size must be positive, got ${height}x${width}`);
  const size = imageSize(dataset);
  for (const [splitName, set] of [['train', dataset.train], ['test', dataset.test]] as const) {
    if (set.pixels.length !== set.count * size) {
      throw new Error(`${dataset.name}/${splitName}: ${set.pixels.length} pixel values for ${set.count} images of ${size}`);
    }
    if (set.labels.length !== set.count) {
      throw new Error(`${dataset.name}/${splitName}: ${set.labels.length} labels for ${set.count} images`);
    }
    for (let i = 0; i < set.count; i++) {
      const label = set.labels[i]!;
      if (label < -1 || label >= dataset.classes.length) {
        throw new Error(`${dataset.name}/${splitName}: image ${i} has label ${label}, outside -1..${dataset.classes.length - 1}`);
      }
    }
  }
  return dataset;
}
