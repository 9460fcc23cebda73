import { formatDuration } from '@novamesh/contracts';
import { Argument, type Command, Option } from 'commander';
import { type CliContext, withMesh } from '../context';
import { durationArg } from '../options';
import { serviceNameArg } from './sidecar-flags';

/** `meshctl deregister NAME [--drain 5s]`: drains, then removes; exit 4 when NAME is not registered. */
export function deregisterCommand(program: Command, ctx: CliContext): void {
  program
    .command('deregister')
    .description('drain a service, then remove it from the mesh')
    .addArgument(new Argument('<name>', 'service name').argParser(serviceNameArg))
    .addOption(
      new Option('--drain <duration>', 'how long endpoints keep serving in-flight traffic first; 0 removes at once')
        .argParser(durationArg)
        .default(5_000, '5s'),
    )
    .action(async (name: string, opts: { drain: number }, cmd: Command) => {
      await withMesh(ctx, cmd, async (mesh) => {
        // Deregistering a name nobody registered would only wait for a change that never comes.
        await ctx.spin(`looking up ${name}`, mesh.getService(name, { signal: ctx.signal }));
        await ctx.spin(
          `deregistering ${name}: waiting for discovery to apply it`,
          mesh.deregisterService(name, { drain: opts.drain, wait: true, signal: ctx.signal }),
        );
      });
      ctx.io.stdout.write(
        opts.drain > 0 ? `service/${name} draining for ${formatDuration(opts.drain)}, then removed\n` : `service/${name} deregistered\n`,
      );
    });
}
