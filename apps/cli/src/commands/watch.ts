import type { EndpointSetV1 } from '@novamesh/contracts';
import { Argument, type Command } from 'commander';
import { type CliContext, withMesh } from '../context';
import { matchesSelector, outputOption, type Selector, selectorOption } from '../options';
import { endpointsTable, type OutputFormat, renderStreamItem, setHeadline } from '../output';
import { serviceNameArg } from './sidecar-flags';

/**
 * `meshctl watch endpoints NAME`: prints the current endpoint set, then every new one, until
 * Ctrl-C (which ends it with exit code 0). `-o json` writes one JSON object per line.
 */
export function watchCommand(program: Command, ctx: CliContext): void {
  const watch = program.command('watch').description('follow changes until Ctrl-C');

  watch
    .command('endpoints')
    .aliases(['endpoint', 'ep'])
    .description('print the endpoint set of a service each time it changes')
    .addArgument(new Argument('<service>', 'service name').argParser(serviceNameArg))
    .addOption(selectorOption('endpoints'))
    .addOption(outputOption())
    .action(async (name: string, opts: { selector?: Selector; output: OutputFormat }, cmd: Command) => {
      const print = (set: EndpointSetV1) => {
        const shown = { ...set, endpoints: set.endpoints.filter((e) => matchesSelector(e.labels, opts.selector)) };
        if (opts.output !== 'table') ctx.io.stdout.write(renderStreamItem(shown, opts.output));
        else ctx.io.stdout.write(`${setHeadline(shown)}${shown.endpoints.length ? endpointsTable(shown.endpoints) : '(no endpoints)\n'}\n`);
      };
      await withMesh(ctx, cmd, async (mesh) => {
        // A typo should fail with "not found" rather than wait forever for a service that never comes.
        await ctx.spin(`looking up ${name}`, mesh.getService(name, { signal: ctx.signal }));
        // While NATS is away nothing new can arrive: say so, so that silence is not read as "no change".
        mesh.onConnectionChange(
          (change, server) =>
            ctx.io.stderr.write(
              change === 'disconnected'
                ? `meshctl: lost the connection to NATS (${server}); reconnecting — what is shown may be stale until then\n`
                : `meshctl: reconnected to NATS (${server}); following ${name} again\n`,
            ),
          { signal: ctx.signal },
        );
        const sets = mesh.watchEndpoints(name, { signal: ctx.signal });
        let next = await ctx.spin(`waiting for the endpoint set of ${name}`, sets.next());
        while (!next.done) {
          print(next.value);
          next = await sets.next();
        }
      });
    });
}
