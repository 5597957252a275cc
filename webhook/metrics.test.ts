import { describe, expect, it } from 'vitest';
import { WebhookMetrics } from './metrics.js';

function line(text: string, prefix: string): string | undefined {
  return text.split('\n').find((l) => l.startsWith(prefix));
}

describe('WebhookMetrics', () => {
  it('renders the latency histogram with cumulative buckets, sum and count per route', async () => {
    const metrics = new WebhookMetrics({ defaultMetrics: false });
    for (const s of [0.00005, 0.0003, 0.0003, 0.002, 5]) metrics.observe('verify', s);
    metrics.observe('tokenreview', 0.01);
    const text = await metrics.registry.metrics();
    expect(text).toContain('# TYPE keyward_webhook_request_duration_seconds histogram');
    const bucket = (le: string, route = 'verify') =>
      line(text, `keyward_webhook_request_duration_seconds_bucket{le="${le}",route="${route}"}`)?.split(
        ' ',
      )[1];
    expect([bucket('0.0001'), bucket('0.0005'), bucket('0.0025'), bucket('1'), bucket('+Inf')]).toEqual([
      '1',
      '3',
      '4',
      '4',
      '5',
    ]);
    expect(bucket('0.01', 'tokenreview')).toBe('1');
    expect(line(text, 'keyward_webhook_request_duration_seconds_count{route="verify"}')).toMatch(/ 5$/);
    expect(
      Number(line(text, 'keyward_webhook_request_duration_seconds_sum{route="verify"}')?.split(' ')[1]),
    ).toBeCloseTo(5.00265, 6);
  });

  it('keeps counting decisions and cache outcomes across scrapes', async () => {
    const metrics = new WebhookMetrics({ defaultMetrics: false });
    metrics.decision('verify', 'allow', 'ok');
    metrics.decision('verify', 'allow', 'ok');
    metrics.cacheOutcome.hit.inc();
    const allow = 'keyward_webhook_decisions_total{route="verify",result="allow",reason="ok"}';
    expect(line(await metrics.registry.metrics(), allow)).toBe(`${allow} 2`);
    metrics.decision('verify', 'allow', 'ok');
    metrics.decision('verify', 'deny', 'unknown');
    const text = await metrics.registry.metrics();
    expect(line(text, allow)).toBe(`${allow} 3`);
    expect(
      line(text, 'keyward_webhook_decisions_total{route="verify",result="deny",reason="unknown"}'),
    ).toMatch(/ 1$/);
    expect(line(text, 'keyward_webhook_cache_lookups_total{outcome="hit"}')).toMatch(/ 1$/);
  });
});
