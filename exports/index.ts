/** What leaves the framework: the entry points the CLI (cli/) calls, and the pieces behind them. */
export { exportTeacher, readExportInfo, buildTeacherGraph, backboneSpecs, type ExportInfo, type ExportTeacherOptions, type ExportTeacherResult } from './teacher.ts';
export { knnEvaluate, knnClassify, rawPixelKnn, extractFeatures, formatKnnTable, KNN_KS, type KnnResult, type KnnEvaluateOptions, type KnnEvaluation, type FeatureSet } from './knn.ts';
export { linearProbe, trainLinearProbe, type LinearProbeOptions, type LinearProbeEvaluation } from './linear.ts';
export { attentionMaps, attentionMask, type AttentionMapsOptions, type AttentionMapsResult } from './attention.ts';
export { serve, prepareDemo, startStaticServer, type ServeOptions } from './serve.ts';
export { writeReport, type ReportOptions } from './report.ts';
