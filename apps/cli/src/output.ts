import type { EndpointSetV1, EndpointStateV1 } from '@novamesh/contracts';
import type stringWidthOf from 'string-width';
import { stringify } from 'yaml';

let loadedStringWidth: typeof stringWidthOf | undefined;
/**
 * Terminal columns of `s` (string-width, an ES module): loaded on the first table, not at every
 * start of meshctl, where loading it cost a sixth of the start-up time.
 */
function stringWidth(s: string): number {
  loadedStringWidth ??= (require('string-width') as { default: typeof stringWidthOf }).default;
  return loadedStringWidth(s);
}

/** `-o` values every reading command accepts. */
export const OUTPUT_FORMATS = ['table', 'json', 'yaml'] as const;
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];

/**
 * `text` safe to print on a terminal: control characters (escape sequences that could retitle the
 * window, clear the screen or fake a line; newlines) become visible `\u001b`-style escapes. Values
 * in tables come from registrations and acknowledgements any NATS client can publish.
 */
export function printable(text: string): string {
  // C0 and C1 controls, line and paragraph separators, and bidirectional overrides (which reorder what follows).
  return text.replace(
    // biome-ignore lint/suspicious/noControlCharactersInRegex: finding control characters is the point
    /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}

/**
 * Renders rows as left-aligned columns separated by three spaces (kubectl's layout), with no
 * trailing spaces. Plain text only: no colors, so NO_COLOR and pipes need nothing special. Cells
 * are {@link printable}.
 */
export function renderTable(headers: readonly string[], rawRows: readonly (readonly string[])[]): string {
  const lines = [headers, ...rawRows.map((r) => r.map(printable))];
  // Columns a cell takes on a terminal: two for East Asian wide characters and emoji, none for combining marks.
  const cellWidths = lines.map((cells) => cells.map(stringWidth));
  const widths = headers.map((_, i) => Math.max(...cellWidths.map((w) => w[i] ?? 0)));
  const line = (cells: readonly string[], w: readonly number[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c + ' '.repeat(Math.max(0, (widths[i] ?? 0) - (w[i] ?? 0)))))
      .join('   ')
      .trimEnd();
  return `${lines.map((cells, r) => line(cells, cellWidths[r] ?? [])).join('\n')}\n`;
}

/** `healthy/total`, e.g. `2/3`. */
export function healthSummary(set: EndpointSetV1): string {
  return `${set.endpoints.filter((e) => e.status === 'healthy').length}/${set.endpoints.length}`;
}

export function servicesTable(sets: readonly EndpointSetV1[]): string {
  return renderTable(
    ['NAME', 'TYPE', 'PORT', 'ENDPOINTS', 'REVISION'],
    sets.map((s) => [s.service, s.type, String(s.port), healthSummary(s), String(s.revision)]),
  );
}

export function endpointsTable(endpoints: readonly EndpointStateV1[]): string {
  return renderTable(
    ['ID', 'ADDRESS', 'PORT', 'WEIGHT', 'STATUS', 'REASON', 'LABELS'],
    endpoints.map((e) => [e.id, e.address, String(e.port), String(e.weight), e.status, e.reason || '-', formatLabels(e.labels)]),
  );
}

/** `k=v,k2=v2` sorted by key, or `-` when there are none. */
export function formatLabels(labels: Record<string, string>): string {
  const keys = Object.keys(labels).sort();
  return keys.length ? keys.map((k) => `${k}=${labels[k]}`).join(',') : '-';
}

/** One line introducing an endpoint set in `watch` output. */
export function setHeadline(set: EndpointSetV1): string {
  const state = set.deregistered ? 'deregistered' : `${healthSummary(set)} healthy`;
  return `${set.service}   revision ${set.revision}   ${state}   ${set.updatedAt}\n`;
}

/** A whole document for `-o json` / `-o yaml`. */
export function renderValue(value: unknown, format: Exclude<OutputFormat, 'table'>): string {
  return format === 'json' ? `${JSON.stringify(value, null, 2)}\n` : stringify(value, { lineWidth: 0 });
}

/** One item of a stream: a JSON line (`-o json`) or a YAML document (`-o yaml`). */
export function renderStreamItem(value: unknown, format: Exclude<OutputFormat, 'table'>): string {
  return format === 'json' ? `${JSON.stringify(value)}\n` : `---\n${stringify(value, { lineWidth: 0 })}`;
}
