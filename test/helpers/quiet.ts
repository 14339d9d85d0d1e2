/** Imported first by tests: keeps the SDK's INFO logs out of test output. */
import { installLogger } from '../../workers/logging';

installLogger('ERROR');
