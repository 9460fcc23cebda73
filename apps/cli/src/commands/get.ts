import { Argument, type Command } from 'commander';
import { type CliContext, withMesh } from '../context';
import { matchesSelector, outputOption, type Selector, selectorOption } from '../options';
import { endpointsTable, formatLabels, type OutputFormat, renderValue, servicesTable } from '../output';
import { serviceNameArg } from './sidecar-flags';

interface GetOptions {
  selector?: Selector;
  output: OutputFormat;
}

/**
 * `meshctl get services|endpoints`: one answer from discovery, as a table or a document.
 * Returns the `get` command, which other resources (`get policies`) add themselves to.
 */
export function getCommand(program: Command, ctx: CliContext): Command {
  const get = program.command('get').description('show services, the endpoints of one service, or policies');

  get
    .command('services')
    .aliases(['service', 'svc'])
    .description('list registered services (NAME TYPE PORT ENDPOINTS=healthy/total REVISION)')
    .addOption(selectorOption('services with an endpoint'))
    .addOption(outputOption())
    .action(async (opts: GetOptions, cmd: Command) => {
      const sets = await withMesh(ctx, cmd, (mesh) =>
        ctx.spin('asking discovery', mesh.listServices({ labels: opts.selector, signal: ctx.signal })),
      );
      if (opts.output !== 'table') ctx.io.stdout.write(renderValue(sets, opts.output));
      else if (sets.length === 0)
        ctx.io.stderr.write(opts.selector ? `No services match ${formatLabels(opts.selector)}.\n` : 'No services registered.\n');
      else ctx.io.stdout.write(servicesTable(sets));
    });

  get
    .command('endpoints')
    .aliases(['endpoint', 'ep'])
    .description('show the endpoints of a service with their health')
    .addArgument(new Argument('<service>', 'service name').argParser(serviceNameArg))
    .addOption(selectorOption('endpoints'))
    .addOption(outputOption())
    .action(async (name: string, opts: GetOptions, cmd: Command) => {
      const set = await withMesh(ctx, cmd, (mesh) => ctx.spin('asking discovery', mesh.getService(name, { signal: ctx.signal })));
      const shown = { ...set, endpoints: set.endpoints.filter((e) => matchesSelector(e.labels, opts.selector)) };
      if (opts.output !== 'table') ctx.io.stdout.write(renderValue(shown, opts.output));
      else if (shown.endpoints.length === 0)
        ctx.io.stderr.write(
          opts.selector ? `No endpoints of ${name} match ${formatLabels(opts.selector)}.\n` : `${name} has no endpoints.\n`,
        );
      else ctx.io.stdout.write(endpointsTable(shown.endpoints));
    });
  return get;
}
