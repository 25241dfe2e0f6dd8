/**
 * What leaves the framework: the entry points the CLI (cli/) calls, and the pieces behind them, by role:
 * export/ writes a trained run out (ONNX, weights, a Hugging Face folder); evaluation/ measures a model (k-NN, linear
 * probe, features, the training curve); apps/ are programs on top of both (the demo server, the report, attention maps).
 * Imports run export <- evaluation <- apps, never the other way.
 */

// export/
export { exportTeacher, ExportSourceError, type ExportSourceOptions, readExportInfo, buildTeacherGraph, backboneSpecs, preprocessorConfig, PREPROCESSOR_CONFIG, type ExportInfo, type ExportTeacherOptions, type ExportTeacherResult, type PreprocessorConfig } from './export/teacher.ts';
export { exportHf, buildHfGraph, hfConfig, hfPreprocessorConfig, HF_EXPORT_INFO_KEY, type HfExportInfo, type HfExportOptions, type HfExportResult } from './export/hf.ts';
export { exportBackbone, readBackboneExportInfo, BACKBONE_EXPORT_KEY, type BackboneExportInfo, type ExportBackboneOptions } from './export/backbone.ts';

// evaluation/
export { knnEvaluate, knnClassify, checkKnnOptions, formatKnnTable, KNN_KS, KNN_TEMPERATURE, type KnnResult, type KnnEvaluateOptions, type KnnEvaluation } from './evaluation/knn.ts';
export { extractFeatures, type FeatureSet, type LinearFeatureSpec } from './evaluation/extract-features.ts';
export { runModel, ModelSourceError } from './evaluation/run-model.ts';
export { rawPixelKnn, rawPixelFeatures, runNormalization, datasetNormalization, type PixelNormalization } from './evaluation/raw-pixels.ts';
export { runDataSource, evalDataSource, evalFolder, EvalOptionError, EvalDataError, type DataSource, type EvalDataOptions, type EvalFolder, type FolderRows } from './evaluation/eval-data.ts';
export { linearProbe, trainLinearProbe, type LinearProbeOptions, type LinearProbeEvaluation } from './evaluation/linear.ts';
export { trainCurve, scoreModel, scoreRawPixels, scoreFeatures, curveSteps, describeYardstick, formatCurveTable, readCurve, writeCurve, CURVE_PROBE, CURVE_YARDSTICK, type CurveFile, type CurvePoint, type Yardstick, type YardstickScore, type TrainCurveOptions, type TrainCurveResult } from './evaluation/curve.ts';
export { extractFeatureFile, writeFeatures, datasetImages, folderImages, dinoEvalTransform, evalImages, imageFeatures, type EvalImages, type EvalSplit, type BatchedImages, type ModelInputBatch, type WriteFeaturesOptions, type WriteFeaturesResult, type ExtractFeaturesOptions } from './evaluation/features.ts';
export { readFeatureFile, readFeatureSplits, FeatureFileError, featureSplit, saveFeatureRows, featureFilePaths, type FeatureFile, type FeatureFileInfo, type FeatureRows } from './evaluation/feature-file.ts';

// apps/
export { attentionMaps, attentionMask, type AttentionMapsOptions, type AttentionMapsResult } from './apps/attention.ts';
export { serve, prepareDemo, startStaticServer, PortInUseError, type ServeOptions } from './apps/serve.ts';
export { writeReport, type ReportOptions } from './apps/report.ts';
