import type { AccessPolicy } from '../../api/accesspolicy.js';
import { type ActAs, globMatches } from '../../api/actas.js';

/** What the policies selecting a namespace let its users act as; both empty: nothing. */
export interface ActAsGrants {
  /** ServiceUser username globs. */
  readonly serviceUsers: readonly string[];
  /** External subject id globs. */
  readonly externalSubjects: readonly string[];
}

/** A user's spec.actAs as stored and as the webhook checks it: two lists of globs. */
export interface ActAsPatterns {
  readonly serviceUsers: readonly string[];
  readonly externalSubjects: readonly string[];
}

/** No acting at all: the default for a user without spec.actAs and for any user beyond its grants. */
export const NO_ACTING: ActAsPatterns = { serviceUsers: [], externalSubjects: [] };

/** The union of the selecting policies' spec.actAs; with none, no acting is granted. */
export function actAsGrantsOf(selecting: readonly AccessPolicy[]): ActAsGrants {
  const serviceUsers = new Set<string>();
  const externalSubjects = new Set<string>();
  for (const { spec } of selecting) {
    for (const p of spec.actAs?.serviceUsers ?? []) serviceUsers.add(p);
    for (const p of spec.actAs?.externalSubjects ?? []) externalSubjects.add(p);
  }
  return { serviceUsers: [...serviceUsers], externalSubjects: [...externalSubjects] };
}

/** The user's spec.actAs as patterns (unset lists are empty). */
export function actAsPatterns(actAs: ActAs | undefined): ActAsPatterns {
  return { serviceUsers: actAs?.serviceUsers ?? [], externalSubjects: actAs?.externalSubjects ?? [] };
}

/**
 * Whether every name the glob `pattern` matches is matched by the glob `grant` too. Reading the
 * pattern's `*` as a literal character is enough: a grant's literal parts never contain `*`, so
 * each `*` of the pattern lands inside a `*` of the grant, which then absorbs whatever it stands
 * for. (Sound, not complete: a pattern covered only by several grants together is refused.)
 */
export function globCovers(grant: string, pattern: string): boolean {
  return globMatches(grant, pattern);
}

/** The first spec.actAs pattern beyond the grants, as `[field, value]`, or undefined when all fit. */
export function actAsBeyondGrants(
  patterns: ActAsPatterns,
  grants: ActAsGrants,
): readonly [field: string, value: string] | undefined {
  const lists = [
    ['serviceUsers', patterns.serviceUsers, grants.serviceUsers],
    ['externalSubjects', patterns.externalSubjects, grants.externalSubjects],
  ] as const;
  for (const [field, wanted, granted] of lists) {
    const i = wanted.findIndex((p) => !granted.some((g) => globCovers(g, p)));
    if (i >= 0) return [`spec.actAs.${field}[${i}]`, wanted[i] ?? ''];
  }
  return undefined;
}
