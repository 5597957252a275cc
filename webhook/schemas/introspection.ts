import { z } from 'zod';

/**
 * An RFC 7662 introspection request, form-encoded. `token_type_hint` and any other parameter are
 * allowed and ignored (§2.1: the server may ignore the hint). A repeated `token` is ambiguous and
 * is not a request for either value.
 */
export const introspectionRequest = z.object({
  token: z.string().min(1),
});

/** The answer for an active token (§2.2); anything else gets `{"active": false}` and no more. */
export interface ActiveIntrospection {
  readonly active: true;
  readonly scope: string;
  readonly username: string;
  readonly sub: string;
  readonly client_id: string;
  readonly token_type: 'Bearer';
  readonly exp?: number;
  readonly iat: number;
}
