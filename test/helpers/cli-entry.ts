/** Entry point for `runCli`: the CLI from source. */
import { main } from '../../cli/main';

void main(process.argv);
