import type { KubernetesObject } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import type { AccessPolicy } from '../../api/accesspolicy.js';
import { parseServiceUser } from '../../api/validate.js';
import type { ServiceUserRecord, UpsertServiceUserResult } from '../../store/operator-store.js';
import { FakeClock } from '../../test/support/fake-clock.js';
import { grantsFor } from '../accesspolicy/grants.js';
import { PROGRESSING, setConditions } from '../conditions.js';
import { FINALIZER } from '../objects.js';
import {
  eventsFor,
  failureConditions,
  planFor,
  readyConditions,
  type ServiceUserFacts,
  storeFailure,
} from './checks.js';

const NS = 'team-a';
const UID = '00000000-0000-4000-8000-000000000001';
const policy: AccessPolicy = {
  apiVersion: 'keyward.dev/v1alpha1',
  kind: 'AccessPolicy',
  metadata: { name: 'p' },
  spec: { namespaces: [NS], groups: ['deployers'], scopes: ['projects:*'], kubernetesAuthentication: true },
};
const grants = grantsFor([policy], { name: NS, labels: {} });

function object(spec: Record<string, unknown>, meta: Record<string, unknown> = {}): KubernetesObject {
  return {
    apiVersion: 'keyward.dev/v1alpha1',
    kind: 'ServiceUser',
    metadata: { name: 'ci', namespace: NS, uid: UID, generation: 1, finalizers: [FINALIZER], ...meta },
    spec,
  } as KubernetesObject;
}

function record(overrides: Partial<ServiceUserRecord> = {}): ServiceUserRecord {
  const at = new Date('2025-01-01T00:00:00Z');
  return {
    id: 'u1',
    ref: { namespace: NS, name: 'ci', uid: UID },
    username: `${NS}_ci`,
    description: 'stored',
    contact: null,
    groups: ['deployers'],
    scopes: ['projects:alpha'],
    suspended: false,
    kubernetesAuthentication: true,
    notPermitted: false,
    createdAt: at,
    updatedAt: at,
    deletedAt: null,
    ...overrides,
  };
}

function facts(obj: KubernetesObject, stored: ServiceUserRecord | null = null): ServiceUserFacts {
  const deleting = obj.metadata?.deletionTimestamp !== undefined;
  return { object: obj, parsed: parseServiceUser(obj), grants: deleting ? undefined : grants, stored };
}

const valid = { username: `${NS}_ci`, groups: ['deployers'], scopes: ['projects:alpha'] };
const ref = { namespace: NS, name: 'ci', uid: UID };

describe('planFor: the first failing check wins, and what the store must hold', () => {
  const cases: Array<{ name: string; facts: ServiceUserFacts; want: unknown }> = [
    {
      name: 'deleting with the finalizer: finalize',
      facts: facts(object(valid, { deletionTimestamp: '2025-01-01T00:00:00Z' }), record()),
      want: { kind: 'finalize' },
    },
    {
      name: 'deleting without the finalizer: nothing',
      facts: facts(object(valid, { deletionTimestamp: '2025-01-01T00:00:00Z', finalizers: [] })),
      want: { kind: 'none' },
    },
    {
      name: 'an unparsable spec, even one being deleted, still finalizes',
      facts: facts(object({ suspended: 'yes' }, { deletionTimestamp: '2025-01-01T00:00:00Z' })),
      want: { kind: 'finalize' },
    },
    {
      name: 'the store already retired this object (a late reconcile): nothing',
      facts: facts(object(valid), record({ deletedAt: new Date() })),
      want: { kind: 'none' },
    },
    {
      name: 'first pass of a valid user: finalizer first',
      facts: facts(object(valid, { finalizers: [] })),
      want: { kind: 'addFinalizer' },
    },
    {
      name: 'a valid user: the whole spec, with what the grants decide',
      facts: facts(object({ ...valid, suspended: true, description: 'd' }), record()),
      want: {
        kind: 'store',
        spec: {
          ref,
          username: `${NS}_ci`,
          description: 'd',
          contact: null,
          groups: ['deployers'],
          scopes: ['projects:alpha'],
          suspended: true,
          kubernetesAuthentication: true,
          notPermitted: false,
        },
      },
    },
    {
      name: 'an unparsable spec never stored: status only, no name claimed, no finalizer',
      facts: facts(object({ ...valid, suspended: 'yes' }, { finalizers: [] })),
      want: {
        kind: 'store',
        spec: undefined,
        failure: { reason: 'InvalidSpec', message: expect.stringContaining('suspended'), stalled: true },
      },
    },
    {
      name: 'an unparsable spec of a stored user: its keys stop verifying, the stored fields stay',
      facts: facts(object({ ...valid, bogus: 1 }), record({ suspended: true })),
      want: {
        kind: 'store',
        spec: {
          ref,
          username: `${NS}_ci`,
          description: 'stored',
          contact: null,
          groups: ['deployers'],
          scopes: ['projects:alpha'],
          suspended: true,
          notPermitted: true,
        },
        failure: { reason: 'InvalidSpec', message: 'spec.bogus: unknown field', stalled: true },
      },
    },
    {
      name: 'beyond the grants, never stored: status only',
      facts: facts(object({ ...valid, username: 'someone-else' }, { finalizers: [] })),
      want: {
        kind: 'store',
        spec: undefined,
        failure: { reason: 'NotPermitted', message: expect.stringContaining('spec.username'), stalled: true },
      },
    },
    {
      name: 'beyond the grants, stored: blocked, but suspension and narrowing still apply',
      facts: facts(
        object({ username: 'someone-else', groups: ['deployers', 'admins'], scopes: [], suspended: true }),
        record(),
      ),
      want: {
        kind: 'store',
        spec: {
          ref,
          username: `${NS}_ci`,
          description: '',
          contact: null,
          groups: ['deployers'],
          scopes: [],
          suspended: true,
          kubernetesAuthentication: false,
          notPermitted: true,
        },
        failure: { reason: 'NotPermitted', message: expect.stringContaining('someone-else'), stalled: true },
      },
    },
    {
      name: 'a group beyond the grants is named in the message',
      facts: facts(object({ ...valid, groups: ['admins'] }), record()),
      want: {
        kind: 'store',
        spec: expect.objectContaining({ groups: [], notPermitted: true }),
        failure: {
          reason: 'NotPermitted',
          message: expect.stringContaining('spec.groups[0]'),
          stalled: true,
        },
      },
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      expect(planFor(c.facts)).toEqual(c.want);
    });
  }
});

describe('storeFailure', () => {
  const holder = { namespace: 'team-b', name: 'ci' };
  it.each<{ name: string; result: UpsertServiceUserResult; want: unknown }>([
    { name: 'stored', result: { kind: 'ok', user: record(), created: true, changed: [] }, want: undefined },
    {
      name: 'a new user whose name is held',
      result: { kind: 'username_conflict', username: 'x', holder },
      want: {
        reason: 'UsernameConflict',
        message: 'username x is held by ServiceUser team-b/ci',
        stalled: false,
      },
    },
    {
      name: 'a rename onto a held name keeps the old one',
      result: { kind: 'username_conflict', username: 'x', holder, user: record() },
      want: {
        reason: 'UsernameConflict',
        message: `username x is held by ServiceUser team-b/ci; the user keeps the name ${NS}_ci`,
        stalled: false,
      },
    },
  ])('$name', ({ result, want }) => {
    expect(storeFailure(result, 'x')).toEqual(want);
  });
});

describe('eventsFor', () => {
  const failure = { reason: 'NotPermitted', message: 'm', stalled: true };
  const ok = (changed: string[], created = false, user = record()): UpsertServiceUserResult => ({
    kind: 'ok',
    user,
    created,
    changed,
  });
  const readyWas = (reason: string, message: string) =>
    setConditions(undefined, [{ type: 'Ready', status: 'False', reason, message }], 1, new Date());
  it.each<{
    name: string;
    conditions?: ReturnType<typeof readyWas>;
    failure?: typeof failure;
    result?: UpsertServiceUserResult;
    want: string[];
  }>([
    { name: 'a new failure warns', failure, want: ['Warning NotPermitted'] },
    { name: 'the same failure again is quiet', conditions: readyWas('NotPermitted', 'm'), failure, want: [] },
    {
      name: 'a new message warns again',
      conditions: readyWas('NotPermitted', 'old'),
      failure,
      want: ['Warning NotPermitted'],
    },
    { name: 'created', result: ok([], true), want: ['Normal Created'] },
    { name: 'renamed', result: ok(['username']), want: ['Normal Renamed'] },
    {
      name: 'suspended',
      result: ok(['suspended'], false, record({ suspended: true })),
      want: ['Normal Suspended'],
    },
    { name: 'resumed', result: ok(['suspended']), want: ['Normal Reactivated'] },
    { name: 'nothing changed', result: ok([]), want: [] },
  ])('$name', ({ conditions, failure: f, result, want }) => {
    expect(eventsFor(conditions, f, result).map((e) => `${e.type} ${e.reason}`)).toEqual(want);
  });
});

describe('the conditions a pass writes, over time (injected clock)', () => {
  it('moves lastTransitionTime only when a status flips; Stalled follows the failure', async () => {
    const clock = new FakeClock();
    const at = () => new Date(clock.now());
    const ready = setConditions(undefined, readyConditions(record()), 1, at());
    expect(ready.map((c) => [c.type, c.status, c.reason])).toEqual([
      ['Ready', 'True', 'Stored'],
      ['Stalled', 'False', PROGRESSING],
      ['Suspended', 'False', 'Active'],
    ]);

    await clock.advance(60_000);
    const blocked = setConditions(
      ready,
      failureConditions({ reason: 'NotPermitted', message: 'm', stalled: true }),
      2,
      at(),
    );
    expect(blocked.find((c) => c.type === 'Ready')).toMatchObject({
      status: 'False',
      reason: 'NotPermitted',
      lastTransitionTime: at().toISOString(),
      observedGeneration: 2,
    });
    expect(blocked.find((c) => c.type === 'Stalled')).toMatchObject({
      status: 'True',
      reason: 'NotPermitted',
    });

    // A conflict is not stalled: it settles when the holder lets go of the name.
    const flippedAt = at().toISOString();
    await clock.advance(60_000);
    const conflict = setConditions(
      blocked,
      failureConditions({ reason: 'UsernameConflict', message: 'held', stalled: false }),
      3,
      at(),
    );
    expect(conflict.find((c) => c.type === 'Ready')).toMatchObject({
      status: 'False',
      reason: 'UsernameConflict',
      lastTransitionTime: flippedAt,
    });
    expect(conflict.find((c) => c.type === 'Stalled')).toMatchObject({
      status: 'False',
      reason: PROGRESSING,
      lastTransitionTime: at().toISOString(),
    });

    const suspended = setConditions(conflict, readyConditions(record({ suspended: true })), 4, at());
    expect(suspended.find((c) => c.type === 'Suspended')).toMatchObject({
      status: 'True',
      reason: 'Suspended',
    });
  });
});
