// Realistic, deterministic workload data shared by the suites: service names and
// `mesh.v1.registry.<svc>.register` payloads like a Kubernetes-style workload would send.

const DOMAINS = ['payments', 'orders', 'catalog', 'search', 'checkout', 'inventory', 'shipping', 'billing'];
const ROLES = ['api', 'worker', 'gateway', 'grpc', 'events', 'scheduler', 'cache-proxy', 'admin'];
const ZONES = ['eu-west-1a', 'eu-west-1b', 'eu-west-1c'];

/** Deterministic PRNG so every run registers the same services. */
export function mulberry32(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function serviceName(i) {
  return `${DOMAINS[i % DOMAINS.length]}-${ROLES[Math.floor(i / DOMAINS.length) % ROLES.length]}-${String(i).padStart(5, '0')}`;
}

/** A `mesh.v1.registry.<svc>.register` payload like a Kubernetes-style workload would send. */
export function makeService(i, endpointCount) {
  const name = serviceName(i);
  const type = ['http', 'http', 'grpc', 'tcp'][i % 4];
  const port = type === 'grpc' ? 9090 : type === 'tcp' ? 5432 : 8080;
  const version = `v1.${i % 7}.${i % 3}`;
  const podHash = ((i * 2654435761) >>> 0).toString(16).padStart(8, '0').slice(0, 6);
  const endpoints = [];
  for (let k = 0; k < endpointCount; k++) {
    endpoints.push({
      id: `${name}-${podHash}-${k}`,
      address: `10.${1 + (k % 200)}.${(i >> 8) & 255}.${i & 255}`,
      port,
      weight: 100,
      healthy: true,
      labels: {
        'app.kubernetes.io/name': name,
        'app.kubernetes.io/version': version,
        'topology.kubernetes.io/zone': ZONES[k % ZONES.length],
        'pod-template-hash': ((i * 40503) >>> 0).toString(16).padStart(8, '0'),
      },
    });
  }
  return {
    name,
    type,
    port,
    virtualIP: `10.96.${(i >> 8) & 255}.${i & 255}`,
    endpoints,
    settings: {
      team: DOMAINS[i % DOMAINS.length],
      owner: `${DOMAINS[i % DOMAINS.length]}-oncall@example.com`,
      'lb.policy': 'round-robin',
      'timeout.request': '2s',
      retries: '2',
    },
  };
}
