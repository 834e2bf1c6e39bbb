export { NsboxError, type ErrnoCode, type NsboxErrorCode, type NsboxErrorDetails, type NsboxOwnCode } from './errors';
export { Container, type CommitOptions, type ContainerStopOptions, type ExitStatus, type ProcessOptions, type RemoveOptions, type Usage } from './container';
export { type ProcessEvents, type ProcessStreams, type Stdio, type StdioEntry, type StdioMode, type StreamsOf, type TerminalSize } from './stdio';
export { type Limits, type Ulimit } from './limits';
export { type OutputOptions, type OutputResult } from './output';
export {
  Runtime,
  type ContainerInfo,
  type ContainerStatus,
  type ListOptions,
  type PruneOptions,
  type RunOptions,
  type RuntimeOptions,
  type StartOptions,
  type StopOptions,
  type VolumeSpec,
} from './runtime';
export { type DetachedContainer, type DetachedRunOptions, type LogEntry, type LogOptions, type LogsOptions } from './runtime';
export { ImageStore, type ImageInfo, type ImportOptions } from './image/store';
export { Workspace, detectDriver, type StorageDriver } from './workspace';
export { Volume } from './volume';
// What Container.start's options are made of; the plan itself is the binding's wire format, not exported.
export { containerPath, type BindMount, type RootSource, type TmpfsMount } from './plan';
export { DEFAULT_CAPABILITIES, type SecurityOptions } from './security';
export { ExecProcess, type ExecOptions } from './exec';
export { type CopyInOptions, type CopyOutOptions, type CopyResult, type CopySource } from './copy';
export { copyToHost, type CopyToHostOptions } from './copy-host';
