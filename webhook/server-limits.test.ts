import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually } from '../devenv/poll.js';
import { testDatabase } from '../test/harness/database.js';
import { type StoreFixture, storeFixture, testConfig } from '../test/support/webhook.js';
import { type RunningWebhook, runWebhook } from './server.js';

/**
 * What a slow or greedy client gets from the listening server. The detection bounds below (how
 * long a test waits before calling the connection "kept open") are generous multiples of the
 * configured timeouts; Node's own defaults (60 s headers, 5 min request) are far beyond them.
 */
const CALLER = 'limits-test-kube-apiserver-credential';
const DETECT_MS = 8_000;
const MAX_CONNECTIONS = 4;

let fx: StoreFixture;
let webhook: RunningWebhook;
let port: number;

beforeAll(async () => {
  fx = await storeFixture(await testDatabase());
  webhook = await runWebhook({
    config: testConfig(fx.url, {
      KEYWARD_HTTP_HEADERS_TIMEOUT: '1s',
      KEYWARD_HTTP_REQUEST_TIMEOUT: '2s',
      KEYWARD_HTTP_KEEPALIVE_TIMEOUT: '1s',
      KEYWARD_HTTP_MAX_CONNECTIONS: String(MAX_CONNECTIONS),
      KEYWARD_TOKENREVIEW_CREDENTIALS: CALLER,
    }),
    handleSignals: false,
    defaultMetrics: false,
  });
  port = Number(new URL(webhook.url).port);
  await eventually('ready', async () => (await fetch(`${webhook.url}/readyz`)).status === 200, 10_000);
});

afterAll(async () => {
  await webhook?.close();
  await fx?.close();
});

interface Conversation {
  readonly socket: Socket;
  /** Everything the server sent. */
  received(): string;
  /** Resolves with true once the server has closed the connection, false after DETECT_MS. */
  closed(): Promise<boolean>;
}

async function open(): Promise<Conversation> {
  const socket = connect({ host: '127.0.0.1', port });
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  let data = '';
  let ended = false;
  const end = new Promise<void>((resolve) => {
    socket.on('data', (chunk) => {
      data += chunk.toString('latin1');
    });
    // A reset is as closed as a FIN.
    socket.on('error', () => undefined);
    socket.on('close', () => {
      ended = true;
      resolve();
    });
  });
  return {
    socket,
    received: () => data,
    async closed(): Promise<boolean> {
      if (ended) return true;
      let timer: NodeJS.Timeout | undefined;
      const gaveUp = new Promise<false>((resolve) => {
        timer = setTimeout(() => resolve(false), DETECT_MS);
      });
      const result = await Promise.race([end.then(() => true as const), gaveUp]);
      clearTimeout(timer);
      return result;
    },
  };
}

describe('server limits', () => {
  it('cuts off a client that sends its headers too slowly', async () => {
    const c = await open();
    c.socket.write('GET /verify HTTP/1.1\r\nHost: webhook\r\n');
    const drip = setInterval(() => c.socket.writable && c.socket.write('X-Drip: 1\r\n'), 200);
    try {
      expect(await c.closed()).toBe(true);
    } finally {
      clearInterval(drip);
    }
    expect(c.received()).toMatch(/^HTTP\/1\.1 408 /);
  });

  it('cuts off a client that sends its body too slowly', async () => {
    const c = await open();
    const body = JSON.stringify({
      apiVersion: 'authentication.k8s.io/v1',
      kind: 'TokenReview',
      spec: { token: 'x' },
    });
    c.socket.write(
      `POST /tokenreview HTTP/1.1\r\nHost: webhook\r\nAuthorization: Bearer ${CALLER}\r\n` +
        `Content-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n`,
    );
    let sent = 0;
    const drip = setInterval(() => {
      if (sent < body.length && c.socket.writable) c.socket.write(body[sent++]!);
    }, 300);
    try {
      expect(await c.closed()).toBe(true);
    } finally {
      clearInterval(drip);
    }
    expect(sent).toBeLessThan(body.length);
    expect(c.received()).toMatch(/^HTTP\/1\.1 408 /);
  });

  it('refuses a 20 MB /verify body after its headers, without reading it', async () => {
    const total = 20 * 1024 * 1024;
    const c = await open();
    c.socket.write(
      `POST /verify HTTP/1.1\r\nHost: webhook\r\nAuthorization: Bearer kw_x\r\nContent-Length: ${total}\r\n\r\n`,
    );
    // Send a first megabyte, then only wait: a server that drains bodies would wait for the rest.
    c.socket.write(Buffer.alloc(1024 * 1024, 0x61));
    expect(await c.closed()).toBe(true);
    expect(c.received()).toMatch(/^HTTP\/1\.1 413 /);
    expect(c.received()).toMatch(/\r\nconnection: close\r\n/i);
  });

  it('closes an idle keep-alive connection', async () => {
    const c = await open();
    c.socket.write('GET /healthz HTTP/1.1\r\nHost: webhook\r\n\r\n');
    await eventually('the response', () => c.received().includes('\r\n\r\n'), 5000);
    expect(c.received()).toMatch(/^HTTP\/1\.1 200 /);
    expect(c.received()).toMatch(/keep-alive/i);
    expect(await c.closed()).toBe(true);
  });

  it(`accepts at most ${MAX_CONNECTIONS} connections at once`, async () => {
    const held = await Promise.all(Array.from({ length: MAX_CONNECTIONS }, () => open()));
    try {
      const extra = await open();
      extra.socket.write('GET /healthz HTTP/1.1\r\nHost: webhook\r\n\r\n');
      expect(await extra.closed()).toBe(true);
      expect(extra.received()).toBe('');
    } finally {
      for (const c of held) c.socket.destroy();
    }
    await eventually(
      'room again',
      () =>
        fetch(`${webhook.url}/healthz`).then(
          (res) => res.status === 200,
          () => false,
        ),
      5000,
    );
  });

  it('serves /metrics on the metrics port only', async () => {
    expect((await fetch(`${webhook.url}/metrics`)).status).toBe(404);
    const metrics = await fetch(`${webhook.metricsUrl}/metrics`);
    expect(metrics.status).toBe(200);
    expect(await metrics.text()).toContain('keyward_webhook_decisions_total');
    expect((await fetch(`${webhook.metricsUrl}/verify`)).status).toBe(404);
  });
});
