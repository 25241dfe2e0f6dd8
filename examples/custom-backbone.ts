// A backbone of your own, trained with DINO without editing the library: register it, name it in the config, train.
// Run: node --import tsx examples/custom-backbone.ts [OUT_DIR]
import { type BackboneConfig, type Scope, type Tensor, type TrainConfig, conv2d, exportBackbone, gelu, getPreset, linear, loadFashionMnist, reduceMean, registerBackbone, train } from 'dino-ts';

// A strided 3x3 conv, GELU, global average pooling, a linear projection: any crop size works (global and local crops).
const smallConvNet = registerBackbone('small-convnet', {
  build(s: Scope, images: Tensor, cfg) {
    const width = cfg.options!['width'] as number;
    const stem = s.child('stem');
    const x = stem.run(() => {
      const w = stem.param('weight', [width, cfg.inChans, 3, 3], { kind: 'truncnormal', std: 0.2 });
      return gelu(conv2d(images, w, stem.param('bias', [width], { kind: 'zeros' }), { strides: [2, 2], pads: [1, 1, 1, 1] }));
    });
    return { features: linear(s.child('proj'), reduceMean(x, [2, 3]), width, width) };
  },
  featureDim: (cfg) => cfg.options!['width'] as number,
});

const out = process.argv[2] ?? 'runs/small-convnet';
const base = getPreset('fmnist-tiny6'); // DINO's settings for Fashion-MNIST; only the backbone and the length change
const config: TrainConfig<BackboneConfig> = {
  ...base, backbone: smallConvNet({ inChans: 1, imgSize: 28, options: { width: 32 } }), batch: 16, steps: 5, epochs: undefined,
  head: { ...base.head, outDim: 256, hiddenDim: 64, bottleneckDim: 32 },
};
const result = await train({ config, out, dataset: await loadFashionMnist({ limitPerClass: 16 }), progress: 'none' });
console.log(`trained ${result.steps} steps, last loss ${result.lastMetrics['loss']!.toFixed(4)}`);
// Its teacher as an images -> features ONNX model, for dino features / writeFeatures or any ONNX runtime.
const exported = exportBackbone({ config, checkpoint: result.checkpoint, out: `${out}/teacher-features.onnx` });
console.log(`wrote ${exported.out} (features of width ${exported.info.featureDim})`);
