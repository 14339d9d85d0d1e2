/**
 * `keel image`: the sandbox image's tag (and `--build`), and custom images built on it
 * (`keel image build --from …`, `keel image list`).
 */
import type { Command } from 'commander';
import { SessionError } from '../common/errors';
import { buildCustomImage, ImageBuildError, ImageContractError, listCustomImages } from '../host/custom-image';
import { defaultImageTag, ensureImage } from '../host/image';
import type { KeelConfig } from '../workers/config';
import { connectDocker } from '../workers/services';
import { print, printJson } from './terminal';

export function registerImage(program: Command, config: () => KeelConfig): void {
  const image = program
    .command('image')
    .description('print the sandbox image tag; --build builds it when missing; `image build` makes a custom image on it')
    .option('--build', 'build the image if it is not there')
    .action(async (o: { build?: boolean }) => {
      const cfg = config();
      const tag = cfg.sandboxImage ?? defaultImageTag();
      if (o.build) await ensureImage(await connectDocker(cfg), tag, (line) => console.error(line));
      print(tag);
    });

  image
    .command('build')
    .description("build a custom sandbox image: a Dockerfile that starts `ARG KEEL_BASE` / `FROM ${KEEL_BASE}`, on Keel's sandbox image, checked against Keel's contract")
    .requiredOption('--from <path>', 'a Dockerfile, or a folder with one (the folder is the build context)')
    .option('--tag <name>', 'the image name (default keel-custom:<hash of the recipe and base>)')
    .option('--base <image>', "the Keel sandbox image to build on (default: what `keel image` prints; built first when missing)")
    .option('--network <mode>', "the network the Dockerfile's RUN steps get (docker build --network): host, none, or a network name (default KEEL_IMAGE_BUILD_NETWORK, else Docker's default bridge)")
    .option('--json', 'print JSON')
    .action(async (o: { from: string; tag?: string; base?: string; network?: string; json?: boolean }) => {
      const cfg = config();
      const docker = await connectDocker(cfg);
      const base = o.base ?? cfg.sandboxImage ?? defaultImageTag();
      const network = o.network ?? process.env.KEEL_IMAGE_BUILD_NETWORK;
      if (!o.base) await ensureImage(docker, base, (line) => console.error(line));
      try {
        const built = await buildCustomImage(docker, { from: o.from, base, ...(o.tag ? { tag: o.tag } : {}), ...(network ? { network } : {}), log: (line) => console.error(line) });
        if (o.json) printJson(built);
        else print(built.tag);
      } catch (err) {
        if (err instanceof ImageContractError) throw new SessionError(`${err.message}\nthe image was not tagged; see docs/readme-pending/images.md`);
        if (err instanceof ImageBuildError) throw new SessionError(err.message);
        throw err;
      }
    });

  image
    .command('list')
    .description('list the custom sandbox images on this Docker host and the base each was built on')
    .option('--json', 'print JSON')
    .action(async (o: { json?: boolean }) => {
      const cfg = config();
      const current = cfg.sandboxImage ?? defaultImageTag();
      const images = (await listCustomImages(await connectDocker(cfg))).map((i) => ({ ...i, currentBase: i.base === current }));
      if (o.json) return printJson(images);
      if (!images.length) return print('no custom sandbox images (build one with `keel image build --from <Dockerfile>`)');
      for (const i of images) {
        print(`${i.tags.join(', ') || i.id.slice(7, 19)}  on ${i.base}${i.currentBase ? '' : ` (not the current base ${current}: rebuild to get this Keel's executor)`}`);
      }
    });
}
