import {
  CoreV1Api,
  EventsV1Api,
  type EventsV1Event,
  type KubeConfig,
  type V1ConfigMap,
} from '@kubernetes/client-node';
import pino from 'pino';
import { beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createTestNamespace } from '../../devenv/kube.js';
import { testKubeConfig } from '../../test/harness/kube.js';
import { EventRecorder, type EventRecorderOptions } from './events.js';

// Integration tests against the run's real kube-apiserver (test/harness/global-setup.ts).

describe('EventRecorder against the API server', () => {
  let kc: KubeConfig;
  let ns: string;
  let target: V1ConfigMap;
  let logs: Array<{ level: number; msg: string }>;

  const recorder = (opts: Partial<EventRecorderOptions> = {}): EventRecorder =>
    new EventRecorder(kc, {
      controller: 'keyward.dev/operator',
      instance: 'test-instance',
      logger: pino({ level: 'debug' }, { write: (line: string) => void logs.push(JSON.parse(line)) }),
      ...opts,
    });
  const eventsAbout = async (name: string): Promise<EventsV1Event[]> => {
    const list = await kc.makeApiClient(EventsV1Api).listNamespacedEvent({ namespace: ns });
    return list.items.filter((e) => e.regarding?.name === name);
  };

  beforeAll(() => {
    kc = testKubeConfig();
  });

  beforeEach(async () => {
    logs = [];
    ns = await createTestNamespace(kc, 'kube-events');
    target = await kc
      .makeApiClient(CoreV1Api)
      .createNamespacedConfigMap({ namespace: ns, body: { metadata: { name: 'target' } } });
  });

  it('writes an events.k8s.io/v1 Event about the object', async () => {
    const events = recorder();
    events.record(target, {
      type: 'Warning',
      reason: 'SecretLost',
      message: 'Secret web was deleted; rotated',
    });
    await events.flush();
    const [event, ...rest] = await eventsAbout('target');
    expect(rest).toEqual([]);
    expect(event).toMatchObject({
      type: 'Warning',
      reason: 'SecretLost',
      action: 'SecretLost',
      note: 'Secret web was deleted; rotated',
      reportingController: 'keyward.dev/operator',
      reportingInstance: 'test-instance',
      regarding: { kind: 'ConfigMap', name: 'target', namespace: ns, uid: target.metadata?.uid },
    });
    expect(event?.series).toBeUndefined();
  });

  it('folds a hot loop of one event into a single Event with a series count', async () => {
    const events = recorder({ seriesFlushMs: 100 });
    for (let i = 0; i < 500; i++)
      events.record(target, { type: 'Normal', reason: 'Issued', message: 'same' });
    await new Promise((resolve) => setTimeout(resolve, 300));
    await events.flush();
    const found = await eventsAbout('target');
    expect(found).toHaveLength(1);
    expect(found[0]?.series?.count).toBe(500);

    events.record(target, { type: 'Normal', reason: 'Issued', message: 'same' });
    await events.flush();
    expect((await eventsAbout('target'))[0]?.series?.count).toBe(501);
  });

  it('caps how many distinct events one object can create', async () => {
    const events = recorder({ burst: 5 });
    for (let i = 0; i < 40; i++)
      events.record(target, { type: 'Normal', reason: 'Churn', message: `attempt ${i}` });
    await events.flush();
    expect(await eventsAbout('target')).toHaveLength(5);
  });

  it('truncates a long message to the 1 kB the API allows', async () => {
    const events = recorder();
    events.record(target, { type: 'Normal', reason: 'Long', message: 'ü'.repeat(2000) });
    await events.flush();
    const [event] = await eventsAbout('target');
    expect(Buffer.byteLength(event?.note ?? '')).toBe(1024);
  });

  it('never throws into the caller; failures are logged', async () => {
    const events = recorder();
    const ghost = {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: 'ghost', namespace: 'no-such-namespace' },
    };
    expect(() =>
      events.record(ghost, { type: 'Normal', reason: 'Lost', message: 'into the void' }),
    ).not.toThrow();
    expect(() =>
      events.record(target, { type: 'Normal', reason: 'R'.repeat(129), message: 'reason too long' }),
    ).not.toThrow();
    await expect(events.flush()).resolves.toBeUndefined();
    expect(logs.filter((l) => l.msg === 'creating event failed')).toHaveLength(2);
  });
});
