import { performance } from 'node:perf_hooks';
import type {
  FastifyBaseLogger,
  FastifyInstance,
  FastifyReply,
  FastifyRequest,
  onRequestHookHandler,
} from 'fastify';

declare module 'fastify' {
  interface FastifyRequest {
    /** performance.now() when the request's first hook ran. */
    startedAt: number;
    /** Milliseconds since then: what keyward_webhook_request_duration_seconds observes. */
    readonly elapsedTime: number;
  }
}

/**
 * What every request goes through first: its start time and the KEYWARD_MAX_URL_BYTES limit.
 * keyward times requests itself because Fastify's own timer (reply.elapsedTime) only runs with a
 * Fastify logger, which costs a child logger and two response listeners per request (app.ts).
 * /verify does both in its own onRequest hook (one hook on the hot path instead of two: each
 * costs Fastify a hook-runner pass per request), the other routes through requestStartHook, and
 * the not-found handler checks the URL itself.
 */
export function decorateRequestStart(app: FastifyInstance): void {
  app.decorateRequest('startedAt', 0);
  app.decorateRequest('elapsedTime', {
    getter(this: FastifyRequest): number {
      return performance.now() - this.startedAt;
    },
  });
}

/**
 * Starts a request: its timer, and keyward's logger for what Fastify itself logs about it ("Reply
 * was already sent", a stream error), which would otherwise go to Fastify's silent logger. Two
 * stores into properties every request has, instead of Fastify's child logger per request.
 */
export function startRequest(request: FastifyRequest, reply: FastifyReply, log: FastifyBaseLogger): void {
  request.startedAt = performance.now();
  request.log = log;
  reply.log = log;
}

export function refuseLongUrl(request: FastifyRequest, reply: FastifyReply, maxUrlBytes: number): boolean {
  const url = request.raw.url;
  if (url === undefined || url.length <= maxUrlBytes) return false;
  reply.code(414).send({ error: 'uri_too_long', error_description: 'The request URL is too long.' });
  return true;
}

/** Callback style: an async hook would cost a promise on every request. */
export function requestStartHook(maxUrlBytes: number): onRequestHookHandler {
  return function startThenCheck(this: FastifyInstance, request, reply, done) {
    startRequest(request, reply, this.log);
    if (!refuseLongUrl(request, reply, maxUrlBytes)) done();
  };
}
