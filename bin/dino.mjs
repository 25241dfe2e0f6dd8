#!/usr/bin/env node
// `npx dino ...` entry: registers tsx so the TypeScript CLI runs without a build step.
import { register } from 'tsx/esm/api';
register();
await import('./dino.ts');
