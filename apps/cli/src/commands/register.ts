import { createReadStream } from 'node:fs';
import {
  ErrorCode,
  formatDuration,
  type Issue,
  MeshError,
  MeshValidationError,
  PARSE_PARAMS,
  type ServiceInput,
  ServiceRegisteredV1,
  SIDECAR_LABEL,
  toIssues,
} from '@novamesh/contracts';
import type { Command } from 'commander';
import { isScalar, parseAllDocuments, parseDocument } from 'yaml';
import { type CliContext, withMesh } from '../context';
import { toMeshError } from '../errors';
import { outputOption } from '../options';
import { type OutputFormat, renderValue } from '../output';

/** Codes meaning "discovery could not be asked", as opposed to "discovery said no". */
const NOT_A_REFUSAL = new Set<string>([ErrorCode.unavailable, ErrorCode.timeout, ErrorCode.aborted, ErrorCode.internal]);

/** `meshctl register -f FILE|-`: validates locally, then registers and waits until discovery applied it. */
export function registerCommand(program: Command, ctx: CliContext): void {
  program
    .command('register')
    .description('register (or replace) a service from a YAML or JSON manifest; succeeds once discovery has applied it')
    .requiredOption('-f, --file <path>', 'manifest file, or - to read stdin')
    .addOption(outputOption())
    .action(async (opts: { file: string; output: OutputFormat }, cmd: Command) => {
      const manifest = await loadManifest(opts.file, ctx.io.stdin);
      const service = await withMesh(ctx, cmd, async (mesh) => {
        try {
          return await ctx.spin(
            `registering ${manifest.name}: waiting for discovery to apply it`,
            mesh.registerService(manifest, { wait: true, signal: ctx.signal }),
          );
        } catch (e) {
          const err = toMeshError(e);
          if (err.code === ErrorCode.timeout)
            // Published but not confirmed: say so, or users would think nothing happened.
            throw new MeshError(err.code, `${err.message} (the registration stays queued; discovery applies it when it catches up)`, {
              cause: err,
            });
          if (NOT_A_REFUSAL.has(err.code)) throw err;
          throw new MeshError(err.code, `discovery refused "${manifest.name}": ${err.message}`, { issues: err.issues, cause: err });
        }
      });
      // meshctl exits now, so nobody heartbeats for this service unless its workload does.
      if (service.heartbeat)
        ctx.io.stderr.write(
          `note: ${service.name} declares heartbeat.ttl ${formatDuration(service.heartbeat.ttl)}: its endpoints turn unhealthy unless the workload sends heartbeats\n`,
        );
      if (opts.output === 'table') {
        const n = service.endpoints.length;
        ctx.io.stdout.write(
          `service/${service.name} registered (${service.type} port ${service.port}, ${n} endpoint${n === 1 ? '' : 's'})\n`,
        );
      } else ctx.io.stdout.write(renderValue(service, opts.output));
    });
}

/**
 * Reads and checks a manifest without touching the network, so a bad file fails the same way
 * whether or not the mesh is up. Every problem is reported at once, with its path.
 */
export async function loadManifest(file: string, stdin: NodeJS.ReadableStream): Promise<ServiceInput> {
  const source = file === '-' ? '<stdin>' : file;
  const text = file === '-' ? await readAll(stdin) : await readManifestFile(file);
  const all = parseAllDocuments(text);
  // Empty documents (a trailing `---`) do not count, as for policy files.
  const docs = Array.isArray(all) ? all.filter((d) => d.errors.length > 0 || !isEmptyDocument(d.contents)) : [];
  if (docs.length > 1)
    throw new MeshValidationError(`${source} holds ${docs.length} YAML documents: register takes one service per file`, []);
  const doc = docs[0] ?? parseDocument(text);
  if (doc.errors.length)
    throw new MeshValidationError(
      `${source} is not valid YAML or JSON`,
      doc.errors.map((e): Issue => {
        const at = e.linePos?.[0];
        // The library appends " at line L, column C:" and a source excerpt; the path says where already.
        return { path: at ? `${source}:${at.line}:${at.col}` : source, message: e.message.split(' at line ')[0] ?? e.message };
      }),
    );
  const value: unknown = doc.toJS();
  if (value === null || value === undefined) throw new MeshValidationError(`${source} is empty: expected one service manifest`, []);
  const checked = ServiceRegisteredV1.safeParse(value, PARSE_PARAMS);
  if (!checked.success) throw new MeshValidationError(`${source} is not a valid service`, toIssues(checked.error));
  const claimed = checked.data.endpoints.flatMap((e, i): Issue[] =>
    e.labels[SIDECAR_LABEL] === undefined
      ? []
      : [
          {
            path: `endpoints[${i}].labels["${SIDECAR_LABEL}"]`,
            message:
              'is set by a sidecar on the endpoint it registers itself; an endpoint registered from a manifest has no sidecar, and callers would open mutual TLS to it (start the workload with meshctl run or meshctl sidecar instead)',
          },
        ],
  );
  if (claimed.length) throw new MeshValidationError(`${source} is not a valid service`, claimed);
  return value as ServiceInput;
}

/** A document with nothing in it (a trailing `---`, comments only). */
function isEmptyDocument(contents: unknown): boolean {
  return contents === null || (isScalar(contents) && contents.value === null);
}

/** The largest manifest or policy file meshctl reads (far beyond what one event or request may carry). */
export const MAX_INPUT_BYTES = 16 * 1024 * 1024;

/** Reads a file named on the command line; a missing, unreadable, too large or non-UTF-8 file is an invalid-input error naming it. */
export async function readManifestFile(file: string): Promise<string> {
  let stream: ReturnType<typeof createReadStream> | undefined;
  try {
    stream = createReadStream(file);
    return await readAll(stream, file);
  } catch (e) {
    if (e instanceof MeshError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'it is a directory' : (e as Error).message;
    throw new MeshError(ErrorCode.invalid, `cannot read ${file}: ${why}`, { cause: e });
  } finally {
    stream?.destroy();
  }
}

/**
 * All of a stream (`-f -`: stdin), as UTF-8 text: at most {@link MAX_INPUT_BYTES}, and bytes that are
 * not UTF-8 are refused (naming where) rather than stored as replacement characters.
 */
export async function readAll(stream: NodeJS.ReadableStream, source = '<stdin>'): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of stream) {
    const b = typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer);
    size += b.length;
    if (size > MAX_INPUT_BYTES)
      throw new MeshError(
        ErrorCode.tooLarge,
        `${source} is larger than ${MAX_INPUT_BYTES / 1024 / 1024} MiB: not a manifest or policy file`,
      );
    chunks.push(b);
  }
  const bytes = Buffer.concat(chunks);
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    const at = firstInvalidUtf8(bytes);
    throw new MeshError(ErrorCode.invalid, `${source} is not UTF-8 text (an invalid byte at offset ${at})`);
  }
}

/** Offset of the first byte where `bytes` stops being valid UTF-8. */
function firstInvalidUtf8(bytes: Buffer): number {
  let lo = 0;
  let hi = bytes.length;
  const ok = (n: number) => {
    try {
      new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(0, n), { stream: true });
      return true;
    } catch {
      return false;
    }
  };
  // The longest valid prefix (streaming: a sequence cut at the end is not yet an error).
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (ok(mid)) lo = mid;
    else hi = mid - 1;
  }
  // The prefix may end inside the sequence that goes wrong: report where that sequence starts (a
  // lead byte whose sequence would reach past the prefix), else the byte after the prefix.
  for (let k = lo - 1; k >= Math.max(0, lo - 3); k--) {
    const b = bytes[k] as number;
    if (b < 0x80) break;
    if (b >= 0xc0) return k + (b >= 0xf0 ? 4 : b >= 0xe0 ? 3 : 2) > lo ? k : lo;
  }
  return lo;
}
