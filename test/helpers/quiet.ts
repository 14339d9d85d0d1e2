/** Imported first by tests: keeps the SDK's INFO logs out of test output. */
import { DefaultLogger, Runtime } from '@temporalio/worker';

Runtime.install({ logger: new DefaultLogger(process.env.KEEL_DEBUG ? 'INFO' : 'ERROR') });
