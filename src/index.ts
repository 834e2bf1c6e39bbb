export { NsboxError, type NsboxErrorCode } from './errors';
export { Container, type ExitStatus, type ProcessOptions, type Stdio } from './container';
export { buildPlan, containerPath, type BindMount, type PlanInput, type RootSource } from './plan';
