/** The store activities (event writes) for session workers; the library itself is `store/`. */
export { createStoreActivities, type StoreActivityDeps } from './activities';
export { classifyStoreError } from './errors';
