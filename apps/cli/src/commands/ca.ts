import type { CaCertV1 } from '@novamesh/contracts';
import { type Command, InvalidArgumentError, Option } from 'commander';
import { type CliContext, withMesh } from '../context';
import { outputOption } from '../options';
import { type OutputFormat, renderTable, renderValue } from '../output';

function usesArg(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('must be a whole number of at least 1');
  return n;
}

/**
 * `meshctl token create --service S [--namespace N] [--ttl 1h] [--uses 1]`: a join token a workload
 * presents once (or `--uses` times) to get its first certificate. Only the token goes to stdout, so
 * `TOKEN=$(meshctl token create --service payment)` works; the details go to stderr.
 */
export function tokenCommand(program: Command, ctx: CliContext): void {
  const token = program.command('token').description('manage join tokens workloads use to get their first certificate');
  token
    .command('create')
    .description('create a join token for one workload identity (printed once; the CA keeps only its hash)')
    .requiredOption('--service <name>', 'the service the token may get certificates for')
    .option('--namespace <name>', 'its namespace', 'default')
    .option('--ttl <duration>', 'how long the token may be used, e.g. 10m, 1h (at most 168h)', '1h')
    .addOption(new Option('--uses <n>', 'how many certificates it may get').argParser(usesArg).default(1))
    .addOption(outputOption())
    .action(async (opts: { service: string; namespace: string; ttl: string; uses: number; output: OutputFormat }, cmd: Command) => {
      const created = await withMesh(ctx, cmd, (mesh) =>
        ctx.spin(
          'asking the certificate authority',
          mesh.createJoinToken(opts.service, { namespace: opts.namespace, ttl: opts.ttl, uses: opts.uses, signal: ctx.signal }),
        ),
      );
      const { ok: _ok, ...shown } = created;
      if (opts.output !== 'table') return void ctx.io.stdout.write(renderValue(shown, opts.output));
      ctx.io.stdout.write(`${created.token}\n`);
      ctx.io.stderr.write(
        `token for namespace ${created.namespace} service ${created.service}: ${created.uses} use(s), expires ${created.expiresAt}\n`,
      );
    });
}

/** `meshctl cert list` and `meshctl cert revoke SERIAL`. */
export function certCommand(program: Command, ctx: CliContext): void {
  const cert = program.command('cert').description('list and revoke workload certificates');
  cert
    .command('list')
    .aliases(['ls'])
    .description('list issued certificates (SERIAL IDENTITY NOT-AFTER STATE)')
    .option('--service <name>', 'only certificates of this service')
    .option('--namespace <name>', 'only certificates of this namespace')
    .addOption(new Option('--state <state>', 'only certificates in this state').choices(['issued', 'revoked', 'expired']))
    .addOption(outputOption())
    .action(
      async (
        opts: { service?: string; namespace?: string; state?: 'issued' | 'revoked' | 'expired'; output: OutputFormat },
        cmd: Command,
      ) => {
        const certs = await withMesh(ctx, cmd, (mesh) =>
          ctx.spin(
            'asking the certificate authority',
            mesh.listCertificates(
              {
                ...(opts.service ? { service: opts.service } : {}),
                ...(opts.namespace ? { namespace: opts.namespace } : {}),
                ...(opts.state ? { state: opts.state } : {}),
              },
              { signal: ctx.signal },
            ),
          ),
        );
        if (opts.output !== 'table') ctx.io.stdout.write(renderValue(certs, opts.output));
        else if (certs.length === 0) ctx.io.stderr.write('No certificates match.\n');
        else ctx.io.stdout.write(certsTable(certs));
      },
    );
  cert
    .command('revoke')
    .description('revoke a certificate: it can no longer renew, and peers refuse it once they apply the revocation list')
    .argument('<serial>', 'the serial, as `meshctl cert list` shows it')
    .option('--reason <text>', 'why (kept with the certificate)')
    .action(async (serial: string, opts: { reason?: string }, cmd: Command) => {
      const r = await withMesh(ctx, cmd, (mesh) =>
        ctx.spin(
          `revoking ${serial}`,
          mesh.revokeCertificate(serial, { ...(opts.reason ? { reason: opts.reason } : {}), signal: ctx.signal }),
        ),
      );
      ctx.io.stdout.write(
        r.alreadyRevoked ? `certificate ${r.serial} was already revoked (${r.revokedAt})\n` : `certificate ${r.serial} revoked\n`,
      );
    });
}

export function certsTable(certs: readonly CaCertV1[]): string {
  return renderTable(
    ['SERIAL', 'IDENTITY', 'NOT-AFTER', 'STATE'],
    certs.map((c) => [c.serial, c.spiffeId, c.notAfter, c.state]),
  );
}
