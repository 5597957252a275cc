import { z } from 'zod';

/** Most matches GitHub sends in one message is not documented; more than this is not a report. */
const MAX_LEAKS_PER_REQUEST = 1000;

/**
 * One match of GitHub's secret-scanning partner program: the token found, the secret type the
 * pattern was registered as, where it was found (a public URL) and what kind of place
 * (`content`, `commit`, `pull_request_comment`…). Fields GitHub may add later are ignored.
 */
const leak = z.object({
  token: z.string().min(1).max(4096),
  type: z.string().max(256).default(''),
  url: z.string().max(2048).optional(),
  source: z.string().max(64).optional(),
});

export const leakReport = z.array(leak).min(1).max(MAX_LEAKS_PER_REQUEST);

/** GitHub's feedback format: one entry per token, identified by its SHA-256 (hex), never itself. */
export interface LeakLabel {
  readonly token_hash: string;
  readonly token_type: string;
  readonly label: 'true_positive' | 'false_positive';
}
