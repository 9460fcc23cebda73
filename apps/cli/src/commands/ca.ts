import type { CaCertV1, CaRotateResultV1, RootRotationPhase } from '@novamesh/contracts';
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

const ROTATE_HELP: Record<RootRotationPhase, string> = {
  begin: 'create a new root and intermediate; trust both roots; sign with the new one from now on',
  status: 'live certificates per root (not expired, not revoked, not superseded by a renewal)',
  finish: 'drop the old root from the trust bundle; refused (exit 1) while a live certificate chains to it',
};

/**
 * `meshctl ca rotate begin|status|finish`: root rotation without failed handshakes. Workloads
 * re-issue under the new root on their own once the trust bundle holds both roots; `finish` is
 * refused (MESH_CONFLICT, exit 1, with the reason) until no live certificate chains to the old root.
 */
export function caCommand(program: Command, ctx: CliContext): void {
  const ca = program.command('ca').description('operate the certificate authority');
  const rotate = ca
    .command('rotate')
    .description('rotate the root CA: begin, then status until no certificate uses the old root, then finish');
  for (const phase of ['begin', 'status', 'finish'] as const) {
    rotate
      .command(phase)
      .description(ROTATE_HELP[phase])
      .addOption(outputOption())
      .action(async (opts: { output: OutputFormat }, cmd: Command) => {
        const r = await withMesh(ctx, cmd, (mesh) =>
          ctx.spin(`asking the certificate authority (rotate ${phase})`, mesh.rotateRoot(phase, { signal: ctx.signal })),
        );
        const { ok: _ok, ...shown } = r;
        if (opts.output !== 'table') return void ctx.io.stdout.write(renderValue(shown, opts.output));
        ctx.io.stdout.write(rotationText(r));
      });
  }
}

export function rotationText(r: CaRotateResultV1): string {
  const table = renderTable(
    ['ROLE', 'ROOT-FINGERPRINT', 'NOT-AFTER', 'LIVE-CERTS'],
    r.roots.map((root) => [root.role, root.fingerprint256, root.notAfter, String(root.liveCertificates)]),
  );
  const old = r.roots.find((root) => root.role === 'previous');
  const current = r.roots.find((root) => root.role === 'current');
  let head: string;
  if (r.phase === 'begin') {
    head = `root rotation begun on replica ${r.instance}: new root ${current?.fingerprint256}; the trust bundle holds both roots.\nWorkloads re-issue under the new root on their own; run \`meshctl ca rotate finish\` once the old root has no live certificates.\n`;
  } else if (r.phase === 'finish') {
    head = `root rotation finished: the trust bundle holds only root ${current?.fingerprint256}.\n`;
  } else if (!old) {
    head = 'no root rotation in progress.\n';
  } else if (old.liveCertificates > 0) {
    head = `root rotation in progress: ${old.liveCertificates} live certificate(s) still chain to the old root; finish would be refused.\n`;
  } else {
    head = 'root rotation in progress: no live certificate chains to the old root; `meshctl ca rotate finish` may run.\n';
  }
  return `${head}${table}`;
}
