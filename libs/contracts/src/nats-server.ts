/**
 * The oldest nats-server Novamesh supports, and is tested against (`.ci/run`, docker-compose's
 * `nats:2.10-alpine`).
 */
export const MIN_NATS_SERVER_VERSION = '2.10.0';

function parts(version: string): [number, number, number] | undefined {
  const m = /^v?(\d+)\.(\d+)\.(\d+)/.exec(version.trim());
  return m ? [Number(m[1]), Number(m[2]), Number(m[3])] : undefined;
}

/**
 * Why a nats-server of `version` (as its INFO reports it) is not fit for the mesh, or undefined
 * when it is (or when the version cannot be read: nothing is claimed then).
 */
export function natsServerTooOld(version: string | undefined): string | undefined {
  const have = version === undefined ? undefined : parts(version);
  const min = parts(MIN_NATS_SERVER_VERSION) as [number, number, number];
  if (!have) return undefined;
  for (let i = 0; i < 3; i++) {
    const [a, b] = [have[i] as number, min[i] as number];
    if (a > b) return undefined;
    if (a < b) {
      return (
        `nats-server ${version} is older than ${MIN_NATS_SERVER_VERSION}, the oldest Novamesh supports: ` +
        'nats-server 2.9 exits (a nil pointer panic) when a stream is deleted while a message is read from it, ' +
        'which the mesh does when a stream is deleted or created again; upgrade nats-server'
      );
    }
  }
  return undefined;
}
