/** The sandbox activities of a sandbox-host worker; the Docker work they do is in `host/`. */
export { createSandboxActivities, HEARTBEAT_THROTTLE_MS, type SandboxActivityDeps } from './activities';
export { resolveSandboxConfig, type SandboxConfig } from './config';
