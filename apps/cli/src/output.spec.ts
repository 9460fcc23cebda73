import type { EndpointSetV1 } from '@novamesh/contracts';
import { describe, expect, it } from 'vitest';
import { endpointsTable, formatLabels, renderStreamItem, renderTable, servicesTable, setHeadline } from './output';

const payment: EndpointSetV1 = {
  service: 'payment',
  revision: 7,
  type: 'http',
  port: 8080,
  endpoints: [
    { id: 'payment-1', address: '10.0.0.11', port: 9101, weight: 1, labels: { zone: 'a', version: 'v1' }, status: 'healthy' },
    {
      id: 'payment-2',
      address: 'payment-2.internal',
      port: 9102,
      weight: 10,
      labels: {},
      status: 'unhealthy',
      reason: 'heartbeat-expired',
    },
  ],
  deregistered: false,
  updatedAt: '2025-01-01T00:00:00.000Z',
};
const ledger: EndpointSetV1 = { ...payment, service: 'ledger-grpc', type: 'grpc', port: 50051, revision: 12, endpoints: [] };

// Golden files: regenerate with `npx vitest run --project unit apps/cli -u` and review the diff.
describe('output', () => {
  it('renders the services table', async () => {
    await expect(servicesTable([ledger, payment])).toMatchFileSnapshot('./__golden__/get-services.txt');
  });

  it('renders the endpoints table', async () => {
    await expect(endpointsTable(payment.endpoints)).toMatchFileSnapshot('./__golden__/get-endpoints.txt');
  });

  it('renders a watch item as a headline, or as one JSON line', () => {
    expect(setHeadline(payment)).toBe('payment   revision 7   1/2 healthy   2025-01-01T00:00:00.000Z\n');
    expect(setHeadline({ ...payment, deregistered: true })).toContain('deregistered');
    const line = renderStreamItem(payment, 'json');
    expect(line.endsWith('\n')).toBe(true);
    expect(line.trimEnd()).not.toContain('\n');
    expect(JSON.parse(line)).toEqual(payment);
  });

  it('pads every column but the last and leaves no trailing spaces', () => {
    expect(
      renderTable(
        ['A', 'LONGER', 'C'],
        [
          ['xx', 'y', ''],
          ['x', '', 'z'],
        ],
      ),
    ).toBe('A    LONGER   C\nxx   y\nx             z\n');
  });

  it('aligns columns by the width a terminal gives: wide characters take two columns, combining marks none', () => {
    const table = renderTable(
      ['ID', 'LABELS', 'STATUS'],
      [
        ['e1', 'zone=東京', 'healthy'],
        ['e2', 'zone=cafe\u0301', 'healthy'],
        ['e3', 'zone=lisbon', 'healthy'],
      ],
    );
    expect(table).toBe(
      [
        'ID   LABELS        STATUS',
        'e1   zone=東京     healthy',
        'e2   zone=cafe\u0301     healthy',
        'e3   zone=lisbon   healthy',
        '',
      ].join('\n'),
    );
  });

  it('prints control characters of a value as visible escapes: a label cannot retitle the terminal, clear it or fake a row', () => {
    const table = renderTable(['ID', 'LABELS'], [['e1', 'v=\u001b]0;pwned\u0007\u001b[31mred\nfake   row']]);
    expect(table).toBe('ID   LABELS\ne1   v=\\u001b]0;pwned\\u0007\\u001b[31mred\\u000afake   row\n');
    // biome-ignore lint/suspicious/noControlCharactersInRegex: asserting there are none
    expect(table.replace(/\n/g, '')).not.toMatch(/[\u0000-\u001f]/);
  });

  it('sorts labels and shows - for none', () => {
    expect(formatLabels({ zone: 'a', app: 'b' })).toBe('app=b,zone=a');
    expect(formatLabels({})).toBe('-');
  });
});
