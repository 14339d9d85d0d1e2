/** The sandbox activities of a sandbox-host worker; the Docker work they do is in `host/`. */
export { createSandboxActivities, type SandboxActivityDeps } from './activities';
export { resolveSandboxConfig, type SandboxConfig } from './config';
