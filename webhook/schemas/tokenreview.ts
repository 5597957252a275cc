import { z } from 'zod';

/** The versions kube-apiserver may send; v1beta1 has the same shape, and is answered in kind. */
const TOKEN_REVIEW_VERSIONS = ['authentication.k8s.io/v1', 'authentication.k8s.io/v1beta1'] as const;

/**
 * The part of an incoming TokenReview the webhook reads. Other fields (metadata, audiences) are
 * allowed and ignored: keys are not audience-bound, and an empty status.audiences tells the API
 * server the token is valid for the audiences it asked about.
 */
export const tokenReviewRequest = z.object({
  apiVersion: z.enum(TOKEN_REVIEW_VERSIONS),
  kind: z.literal('TokenReview'),
  spec: z.object({ token: z.string() }),
});

export type TokenReviewRequest = z.infer<typeof tokenReviewRequest>;

export interface TokenReviewStatus {
  readonly authenticated: boolean;
  readonly user?: {
    readonly username: string;
    readonly uid: string;
    readonly groups: string[];
    readonly extra: Record<string, string[]>;
  };
  readonly error?: string;
}
