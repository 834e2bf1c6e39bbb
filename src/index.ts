export { NsboxError, type NsboxErrorCode, type NsboxErrorDetails } from './errors';
export { Container, type CommitOptions, type ExitStatus, type ProcessOptions, type Stdio } from './container';
export { Runtime, type ContainerInfo, type ContainerStatus, type RunOptions, type RuntimeOptions, type VolumeSpec } from './runtime';
export { ImageStore, type ImageInfo, type ImportOptions } from './image/store';
export { Workspace, detectDriver, type StorageDriver } from './workspace';
export { Volume } from './volume';
export { buildPlan, containerPath, type BindMount, type PlanInput, type RootSource } from './plan';
export { buildConfinement, DEFAULT_CAPABILITIES, type SecurityOptions } from './security';
