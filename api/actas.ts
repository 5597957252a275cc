import { z } from 'zod';

/**
 * A username pattern: the username characters plus `*`, which matches any run of characters
 * (possibly empty). `ci-*` matches `ci-alpha` and `ci-alpha_2`; `*` alone matches every name.
 */
export const USERNAME_GLOB_PATTERN = /^[-_A-Za-z0-9*]+$/;

/** Longest external subject id (and pattern) keyward accepts; the subject header is refused beyond it. */
export const SUBJECT_MAX_LENGTH = 256;

/**
 * An external subject id: printable ASCII without space, `*` (patterns), `,` (a repeated header
 * arrives joined by commas), `"` and `\` (quoting in header values). It must not look like a
 * ServiceUser username (see isExternalSubjectId): that form always names a ServiceUser, so an
 * upstream can never mistake an external subject for a keyward identity or the reverse.
 */
const EXTERNAL_SUBJECT_CHARS = '\\x21\\x23-\\x29\\x2b\\x2d-\\x5b\\x5d-\\x7e';
export const EXTERNAL_SUBJECT_PATTERN = new RegExp(`^[${EXTERNAL_SUBJECT_CHARS}]+$`);
/** The same characters plus `*`, which matches any run of them (possibly empty). */
const EXTERNAL_SUBJECT_GLOB_PATTERN = new RegExp(`^[${EXTERNAL_SUBJECT_CHARS}*]+$`);

const usernamePatterns = z
  .array(
    z
      .string()
      .min(1)
      .max(63)
      .regex(USERNAME_GLOB_PATTERN)
      .describe('A ServiceUser username pattern; * matches any characters, e.g. team_* or ci-bot.'),
  )
  .max(64);

const externalSubjectPatterns = z
  .array(
    z
      .string()
      .min(1)
      .max(SUBJECT_MAX_LENGTH)
      .regex(EXTERNAL_SUBJECT_GLOB_PATTERN)
      .describe(
        'An external subject id pattern: printable ASCII without space, comma, " and \\; * matches any characters, e.g. customer:*.',
      ),
  )
  .max(64);

/**
 * `spec.actAs` of a ServiceUser and of an AccessPolicy: one shape, two meanings. On the user it
 * says which subjects its keys may name in the subject header; on the policy, the most its
 * namespaces' users may ask for. Both lists empty (or the field unset) means no acting at all.
 */
export function actAsSchema(on: 'ServiceUser' | 'AccessPolicy') {
  const whose =
    on === 'ServiceUser'
      ? 'this user may act on behalf of'
      : 'ServiceUsers in the selected namespaces may act on behalf of';
  return z
    .strictObject({
      serviceUsers: usernamePatterns
        .optional()
        .describe(
          `Usernames of other ServiceUsers ${whose}. Acting as one, a request gets that user's scopes narrowed by the key's, and that user's groups.`,
        ),
      externalSubjects: externalSubjectPatterns
        .optional()
        .describe(
          `Subject ids the upstream application owns that ${whose}. keyward passes such a subject on (X-Keyward-User) and the upstream enforces its privileges. An id never has the form of a username: it needs a character such as : or @.`,
        ),
    })
    .describe(
      on === 'ServiceUser'
        ? 'Subjects whose identity this user may take on per request (the X-Keyward-Subject header), within what an AccessPolicy grants its namespace. Unset: none.'
        : 'Subjects ServiceUsers in the selected namespaces may act on behalf of. Unset: none; several policies add up.',
    );
}
export type ActAs = z.infer<ReturnType<typeof actAsSchema>>;

/** Whether the glob `pattern` (`*` = any run of characters, possibly empty) matches `value` exactly. */
export function globMatches(pattern: string, value: string): boolean {
  const parts = pattern.split('*');
  if (parts.length === 1) return pattern === value;
  const first = parts[0] ?? '';
  const last = parts[parts.length - 1] ?? '';
  if (value.length < first.length + last.length || !value.startsWith(first) || !value.endsWith(last)) {
    return false;
  }
  // Left-to-right match of the middle parts within value[first.length, value.length - last.length).
  let at = first.length;
  const end = value.length - last.length;
  for (const part of parts.slice(1, -1)) {
    const found = value.indexOf(part, at);
    if (found < 0 || found + part.length > end) return false;
    at = found + part.length;
  }
  return true;
}
