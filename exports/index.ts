/** What leaves the framework: the entry points the CLI (cli/) calls, and the pieces behind them. */
export { exportTeacher, readExportInfo, buildTeacherGraph, backboneSpecs, preprocessorConfig, PREPROCESSOR_CONFIG, type ExportInfo, type ExportTeacherOptions, type ExportTeacherResult, type PreprocessorConfig } from './teacher.ts';
export { exportHf, buildHfGraph, hfConfig, hfPreprocessorConfig, HF_EXPORT_INFO_KEY, type HfExportInfo, type HfExportOptions, type HfExportResult } from './hf.ts';
export { knnEvaluate, knnClassify, checkKnnOptions, rawPixelKnn, rawPixelFeatures, extractFeatures, formatKnnTable, KNN_KS, KNN_TEMPERATURE, type KnnResult, type KnnEvaluateOptions, type KnnEvaluation, type FeatureSet, type LinearFeatureSpec } from './knn.ts';
export { runDataSource, evalDataSource, loadEvalData, EvalOptionError, EvalDataError, type DataSource, type EvalDataOptions } from './eval.ts';
export { linearProbe, trainLinearProbe, type LinearProbeOptions, type LinearProbeEvaluation } from './linear.ts';
export { attentionMaps, attentionMask, type AttentionMapsOptions, type AttentionMapsResult } from './attention.ts';
export { serve, prepareDemo, startStaticServer, type ServeOptions } from './serve.ts';
export { writeReport, type ReportOptions } from './report.ts';
export { trainCurve, scoreModel, scoreRawPixels, scoreFeatures, curveSteps, describeYardstick, formatCurveTable, readCurve, writeCurve, CURVE_PROBE, CURVE_YARDSTICK, type CurveFile, type CurvePoint, type Yardstick, type YardstickScore, type TrainCurveOptions, type TrainCurveResult } from './curve.ts';
export { extractFeatureFile, writeFeatures, datasetImages, folderImages, dinoEvalTransform, type BatchedImages, type ModelInputBatch, type WriteFeaturesOptions, type WriteFeaturesResult, type ExtractFeaturesOptions } from './features.ts';
export { readFeatureFile, readFeatureSplits, featureSplit, saveFeatureRows, featureFilePaths, type FeatureFile, type FeatureFileInfo, type FeatureRows } from './feature-file.ts';
export { exportBackbone, readBackboneExportInfo, BACKBONE_EXPORT_KEY, type BackboneExportInfo, type ExportBackboneOptions } from './backbone-export.ts';
