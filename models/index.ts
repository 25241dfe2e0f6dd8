/** The architectures DINO trains, written in the DSL: ViT, ResNet, the DINO head, presets, init and weight checks. */
export * from './layers.ts';
export * from './batchnorm.ts';
export * from './vit.ts';
export * from './resnet.ts';
export * from './head.ts';
export * from './presets.ts';
export * from './network.ts';
export * from './backbones.ts';
export * from './weights.ts';
export * from './inspect.ts';
export * from './dino-loss.ts';
export * from './dino-step.ts';
export * from './koleo.ts';
export * from './sinkhorn.ts';
