import https from 'node:https';
import { type KubeConfig, Watch } from '@kubernetes/client-node';
import { KubeStatusError } from './errors.js';
import type { KubeObject } from './object.js';

/** A resource collection, e.g. { group: 'keyward.dev', version: 'v1alpha1', plural: 'apikeys' }. */
export interface ResourceRef {
  /** '' for the core group (ConfigMaps, Secrets). */
  group: string;
  version: string;
  plural: string;
  /** Omit to list and watch across all namespaces (or for cluster-scoped kinds). */
  namespace?: string;
  labelSelector?: string;
  fieldSelector?: string;
}

interface ListResult<T> {
  items: T[];
  resourceVersion: string;
}

interface WatchOptions {
  resourceVersion: string;
  /** Asks the server to end the stream after this long, so connections are recycled. */
  timeoutSeconds: number;
}

/**
 * The transport under an Informer: a consistent list and a watch from its resourceVersion. Watches
 * always ask for bookmarks, so an idle but healthy stream still shows signs of life.
 */
export interface ListWatch<T extends KubeObject> {
  list(signal: AbortSignal): Promise<ListResult<T>>;
  /**
   * Opens a watch. onEvent receives the raw event type and object; onDone is called once, with
   * null when the server ended the stream or with the error that ended it. Resolves to a function
   * that closes the stream.
   */
  watch(
    opts: WatchOptions,
    onEvent: (type: string, object: unknown) => void,
    onDone: (err: unknown) => void,
  ): Promise<() => void>;
}

export function resourcePath(ref: ResourceRef): string {
  const root = ref.group === '' ? `/api/${ref.version}` : `/apis/${ref.group}/${ref.version}`;
  const ns = ref.namespace === undefined ? '' : `/namespaces/${encodeURIComponent(ref.namespace)}`;
  return `${root}${ns}/${ref.plural}`;
}

/** A ListWatch on the API server kc points at, for any kind including custom resources. */
export function kubeListWatch<T extends KubeObject>(kc: KubeConfig, ref: ResourceRef): ListWatch<T> {
  const path = resourcePath(ref);
  const selectors: Record<string, string> = {};
  if (ref.labelSelector !== undefined) selectors.labelSelector = ref.labelSelector;
  if (ref.fieldSelector !== undefined) selectors.fieldSelector = ref.fieldSelector;
  const watcher = new Watch(kc);
  return {
    async list(signal: AbortSignal): Promise<ListResult<T>> {
      const body = (await getJSON(kc, path, selectors, signal)) as {
        apiVersion?: string;
        kind?: string;
        metadata?: { resourceVersion?: string };
        items?: T[];
      };
      // Items of built-in lists come without apiVersion/kind; watch events carry them, and the cache
      // should hold objects of one shape whichever path delivered them.
      const kind = body.kind?.replace(/List$/, '');
      const items = (body.items ?? []).map((item) => ({ apiVersion: body.apiVersion, kind, ...item }));
      return { items, resourceVersion: body.metadata?.resourceVersion ?? '' };
    },
    async watch(opts, onEvent, onDone): Promise<() => void> {
      const controller = await watcher.watch(
        path,
        {
          ...selectors,
          resourceVersion: opts.resourceVersion,
          timeoutSeconds: opts.timeoutSeconds,
          allowWatchBookmarks: true,
        },
        onEvent,
        onDone,
      );
      return () => controller.abort();
    },
  };
}

/**
 * GET returning parsed JSON. The generated clients would deserialize built-in kinds into classes
 * (dates become Date objects) while watch events stay plain JSON; going through the raw API keeps
 * the informer cache uniform and works for custom resources too.
 */
async function getJSON(
  kc: KubeConfig,
  path: string,
  query: Record<string, string>,
  signal: AbortSignal,
): Promise<unknown> {
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new Error('kubeconfig has no current cluster');
  const url = new URL(cluster.server + path);
  for (const [k, v] of Object.entries(query)) url.searchParams.set(k, v);
  const opts: https.RequestOptions = { method: 'GET', headers: { Accept: 'application/json' }, signal };
  await kc.applyToHTTPSOptions(opts);
  return new Promise((resolve, reject) => {
    const req = https.request(url, opts, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('error', reject);
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        const status = res.statusCode ?? 0;
        if (status < 200 || status >= 300) {
          reject(statusError(status, text));
          return;
        }
        try {
          resolve(JSON.parse(text));
        } catch (err) {
          reject(err);
        }
      });
    });
    req.on('error', reject);
    req.end();
  });
}

function statusError(status: number, text: string): KubeStatusError {
  try {
    const s = JSON.parse(text) as { message?: string; reason?: string };
    return new KubeStatusError(status, s.message ?? `HTTP ${status}`, s.reason);
  } catch {
    return new KubeStatusError(status, `HTTP ${status}: ${text.slice(0, 200)}`);
  }
}
