import { EXTERNAL_SUBJECT_PATTERN, globMatches, SUBJECT_MAX_LENGTH } from '../api/actas.js';
import { anyScopeCovers, isValidScope, scopeCovers } from '../api/scopes.js';
import { RESERVED_GROUP_PREFIX, USERNAME_MAX_LENGTH, USERNAME_PATTERN } from '../api/serviceuser.js';
import type { SubjectLookup } from '../store/act-as.js';
import type { KeyLookup } from '../store/lookup.js';
import { headerListItem } from './decision.js';

/**
 * Acting on behalf of a subject: the validators the verification pipeline runs when a request
 * names one in the subject header (X-Keyward-Subject by default). Pure: the pipeline supplies the
 * key, the subject's store row and the required scopes.
 *
 * A value in the username form names a ServiceUser; anything else well-formed is an external
 * subject id. External ids can never take the username form, so X-Keyward-User is unambiguous
 * for the upstream: an actor can never pass itself off as a ServiceUser by naming an "external"
 * subject that happens to be spelled like one.
 */
export type Subject =
  | { readonly kind: 'service-user'; readonly username: string }
  | { readonly kind: 'external'; readonly id: string };

/** The subject header was sent but names nothing usable (repeated, empty, too long, not ASCII…). */
export const MALFORMED_SUBJECT = 'malformed';

/** Why a request naming a subject is refused; each maps to 403 and its message in DENIALS. */
export type SubjectDenyReason =
  | 'subject_malformed'
  | 'acting_not_allowed'
  | 'subject_not_allowed'
  | 'subject_unknown'
  | 'subject_suspended';

/** The one place a refusal's status and message are decided; verify.ts only sends them. */
const DENIALS: Record<SubjectDenyReason, { readonly status: 403; readonly message: string }> = {
  subject_malformed: {
    status: 403,
    message: `The subject header must appear once and name a ServiceUser username or an external subject id of at most ${SUBJECT_MAX_LENGTH} printable ASCII characters.`,
  },
  acting_not_allowed: {
    status: 403,
    message: 'The API key may not act on behalf of a subject (its ServiceUser has no spec.actAs).',
  },
  subject_not_allowed: {
    status: 403,
    message: "The API key may not act on behalf of this subject (not in its ServiceUser's spec.actAs).",
  },
  subject_unknown: { status: 403, message: 'The subject is not a ServiceUser that can be acted for.' },
  subject_suspended: { status: 403, message: 'The subject ServiceUser is suspended.' },
};

/** 403 insufficient_scope while acting: the subject (or the key's narrowing) lacks a required scope. */
export const SUBJECT_SCOPE_MESSAGE =
  'The subject does not hold the required scope within what the API key grants.';

export function subjectDenial(reason: SubjectDenyReason): { readonly status: 403; readonly message: string } {
  return DENIALS[reason];
}

/**
 * The subject header as the request carries it. Node joins a repeated custom header with ", ",
 * and `,` and space belong to no subject, so two headers come out malformed like any other bad
 * value; bytes beyond ASCII arrive as latin1 characters and fail the same character classes.
 */
export function readSubject(
  value: string | readonly string[] | undefined,
): Subject | typeof MALFORMED_SUBJECT | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string') return MALFORMED_SUBJECT;
  if (value.length > SUBJECT_MAX_LENGTH) return MALFORMED_SUBJECT;
  // The username form always names a ServiceUser, even one too long to exist.
  if (USERNAME_PATTERN.test(value)) {
    return value.length <= USERNAME_MAX_LENGTH
      ? { kind: 'service-user', username: value }
      : MALFORMED_SUBJECT;
  }
  if (EXTERNAL_SUBJECT_PATTERN.test(value)) {
    return { kind: 'external', id: value };
  }
  return MALFORMED_SUBJECT;
}

/** The name the upstream sees as X-Keyward-User. */
export function subjectName(subject: Subject): string {
  return subject.kind === 'service-user' ? subject.username : subject.id;
}

/** Whether the key's ServiceUser may act as `subject` by its stored spec.actAs. */
export function mayActAs(key: Pick<KeyLookup, 'actAs'>, subject: Subject): SubjectDenyReason | undefined {
  const actAs = key.actAs;
  if (!actAs || (actAs.serviceUsers.length === 0 && actAs.externalSubjects.length === 0)) {
    return 'acting_not_allowed';
  }
  const patterns = subject.kind === 'service-user' ? actAs.serviceUsers : actAs.externalSubjects;
  const name = subjectName(subject);
  return patterns.some((p) => globMatches(p, name)) ? undefined : 'subject_not_allowed';
}

/**
 * The scopes both lists grant. With this grammar two scopes either cover one another or share
 * nothing (`a:*` and `a:b` → `a:b`; `a:*` and `b:*` → none), so the narrower of each covering
 * pair is the whole intersection.
 */
export function intersectScopes(a: readonly string[], b: readonly string[]): string[] {
  const out = new Set<string>();
  for (const x of a) {
    for (const y of b) {
      if (scopeCovers(y, x)) out.add(x);
      else if (scopeCovers(x, y)) out.add(y);
    }
  }
  return [...out];
}

/** Who the request is treated as, and with what: what verify.ts sends upstream, and the audit names. */
export interface Acting {
  /** Username of the key's ServiceUser: X-Keyward-Actor. */
  readonly actor: string;
  /** The subject's name: X-Keyward-User. */
  readonly subject: string;
  readonly subjectKind: Subject['kind'];
  readonly scopes: readonly string[];
  readonly scopesHeader: string;
  readonly groupsHeader: string;
}

export type ActingDecision =
  | { readonly result: 'allow'; readonly acting: Acting }
  | { readonly result: 'deny'; readonly reason: SubjectDenyReason }
  | { readonly result: 'forbidden'; readonly requiredScope: string; readonly acting: Acting };

/**
 * The verdict on acting as `subject`, for a key that itself verifies and may act as it. A
 * ServiceUser subject must be live, permitted and not suspended; its scopes, narrowed by the key's
 * own list (as a key narrows its own user's), must grant every required scope. An external
 * subject keeps the key's effective scopes as a ceiling (the upstream enforces its privileges)
 * and carries no groups: keyward vouches for none.
 */
export function decideActing(
  key: Pick<KeyLookup, 'username' | 'keyScopes'>,
  keyScopes: readonly string[],
  subject: Subject,
  subjectRow: SubjectLookup | null,
  requiredScopes: readonly string[],
): ActingDecision {
  let acting: Acting;
  if (subject.kind === 'external') {
    acting = {
      actor: key.username,
      subject: subject.id,
      subjectKind: 'external',
      scopes: keyScopes,
      scopesHeader: keyScopes.join(','),
      groupsHeader: '',
    };
  } else {
    if (subjectRow === null || subjectRow.notPermitted) return { result: 'deny', reason: 'subject_unknown' };
    if (subjectRow.suspended) return { result: 'deny', reason: 'subject_suspended' };
    const scopes =
      key.keyScopes === null ? subjectRow.scopes : intersectScopes(subjectRow.scopes, key.keyScopes);
    acting = {
      actor: key.username,
      subject: subjectRow.username,
      subjectKind: 'service-user',
      scopes,
      scopesHeader: scopes.join(','),
      groupsHeader: subjectRow.groups
        .filter((g) => !g.startsWith(RESERVED_GROUP_PREFIX))
        .map(headerListItem)
        .join(','),
    };
  }
  for (const requiredScope of requiredScopes) {
    if (!isValidScope(requiredScope) || !anyScopeCovers(acting.scopes, requiredScope)) {
      return { result: 'forbidden', requiredScope, acting };
    }
  }
  return { result: 'allow', acting };
}
