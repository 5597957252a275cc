import { X509Certificate } from 'node:crypto';
import { copyFile, mkdtemp, readFile, rename, rm } from 'node:fs/promises';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCa, issueCertificate, type KeyPairFiles } from '../../devenv/pki.js';
import { eventually } from '../../devenv/poll.js';
import { type RunningWebhook, runWebhook } from '../../webhook/server.js';
import { testDatabase } from '../harness/database.js';
import { type StoreFixture, storeFixture, testConfig } from '../support/webhook.js';

/**
 * The webhook serving HTTPS: /tokenreview answers a client certificate from the configured CA
 * (what kube-apiserver presents) or the configured bearer credential, and nobody else; /verify
 * needs neither; a renewed certificate is served without a restart.
 */
const BEARER = 'tls-test-tokenreview-credential';

let fx: StoreFixture;
let webhook: RunningWebhook;
let dir: string;
let ca: KeyPairFiles;
let apiserver: KeyPairFiles;
let stranger: KeyPairFiles;
/** The files the webhook is configured with; replaced to renew. */
let serving: KeyPairFiles;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'keyward-tls-'));
  ca = await createCa(dir, 'keyward-webhook-ca');
  const other = await mkdtemp(join(dir, 'other-'));
  const otherCa = await createCa(other, 'someone-else-ca');
  [apiserver, stranger] = await Promise.all([
    issueCertificate(dir, ca, { name: 'kube-apiserver', commonName: 'kube-apiserver', usage: 'client' }),
    issueCertificate(other, otherCa, { name: 'stranger', commonName: 'kube-apiserver', usage: 'client' }),
  ]);
  const first = await issueCertificate(dir, ca, {
    name: 'serving-1',
    commonName: 'webhook-1',
    usage: 'server',
    subjectAltNames: ['IP:127.0.0.1'],
  });
  serving = { cert: join(dir, 'tls.crt'), key: join(dir, 'tls.key') };
  await copyFile(first.cert, serving.cert);
  await copyFile(first.key, serving.key);
  fx = await storeFixture(await testDatabase());
  webhook = await runWebhook({
    config: testConfig(fx.url, {
      KEYWARD_TLS_CERT_FILE: serving.cert,
      KEYWARD_TLS_KEY_FILE: serving.key,
      KEYWARD_TLS_CLIENT_CA_FILE: ca.cert,
      KEYWARD_TLS_RELOAD_INTERVAL: '1s',
      KEYWARD_TOKENREVIEW_CREDENTIALS: BEARER,
    }),
    handleSignals: false,
    defaultMetrics: false,
  });
});

afterAll(async () => {
  await webhook?.close();
  await fx?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

interface Answer {
  status: number;
  body: string;
  /** CN of the certificate the server presented. */
  servedBy: string;
}

async function call(
  path: string,
  options: { client?: KeyPairFiles; headers?: Record<string, string>; body?: string } = {},
): Promise<Answer> {
  const url = new URL(webhook.url);
  const tls = {
    ca: await readFile(ca.cert),
    ...(options.client
      ? { cert: await readFile(options.client.cert), key: await readFile(options.client.key) }
      : {}),
  };
  return await new Promise((resolve, reject) => {
    const req = request(
      {
        host: url.hostname,
        port: url.port,
        path,
        method: options.body === undefined ? 'GET' : 'POST',
        headers: {
          ...(options.body === undefined ? {} : { 'content-type': 'application/json' }),
          ...options.headers,
        },
        agent: false,
        ...tls,
      },
      (res) => {
        const peer = (res.socket as TLSSocket).getPeerX509Certificate?.() as X509Certificate | undefined;
        let body = '';
        res.on('data', (chunk: Buffer) => {
          body += chunk.toString();
        });
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            body,
            servedBy: /CN=([^\n,]+)/.exec(peer?.subject ?? '')?.[1] ?? '',
          }),
        );
      },
    );
    req.on('error', reject);
    req.end(options.body);
  });
}

const review = (token: string) =>
  JSON.stringify({ apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token } });

describe('TLS', () => {
  it('answers /tokenreview for a client certificate from the CA or the bearer credential only', async () => {
    const user = await fx.createUser({ kubernetesAuthentication: true });
    const key = await fx.issueKey(user);
    const body = review(key.token);
    for (const caller of [
      {},
      { client: stranger },
      { headers: { authorization: 'Bearer not-the-credential-x' } },
    ]) {
      const res = await call('/tokenreview', { ...caller, body });
      expect(res.status, JSON.stringify(caller)).toBe(401);
      expect(res.body).not.toContain(user.username);
    }
    for (const caller of [{ client: apiserver }, { headers: { authorization: `Bearer ${BEARER}` } }]) {
      const res = await call('/tokenreview', { ...caller, body });
      expect(res.status).toBe(200);
      expect(JSON.parse(res.body).status).toMatchObject({
        authenticated: true,
        user: { username: `keyward:${user.username}` },
      });
    }
  });

  it('serves /verify over TLS to callers without a certificate', async () => {
    const key = await fx.issueKey(await fx.createUser());
    const res = await call('/verify', { headers: { authorization: `Bearer ${key.token}` } });
    expect(res.status).toBe(200);
    expect(res.servedBy).toBe('webhook-1');
  });

  it('serves a renewed certificate without a restart', async () => {
    const next = await issueCertificate(dir, ca, {
      name: 'serving-2',
      commonName: 'webhook-2',
      usage: 'server',
      subjectAltNames: ['IP:127.0.0.1'],
    });
    // As a Secret volume or cert-manager does it: the files are replaced, not edited.
    await copyFile(next.key, `${serving.key}.new`);
    await copyFile(next.cert, `${serving.cert}.new`);
    await rename(`${serving.key}.new`, serving.key);
    await rename(`${serving.cert}.new`, serving.cert);
    await eventually(
      'the new certificate',
      async () => (await call('/healthz')).servedBy === 'webhook-2',
      10_000,
    );
    const res = await call('/tokenreview', { client: apiserver, body: review('kw_nope') });
    expect(res.status).toBe(200);
    expect(res.servedBy).toBe('webhook-2');
    expect(new X509Certificate(await readFile(serving.cert)).subject).toMatch(/webhook-2/);
  });
});
