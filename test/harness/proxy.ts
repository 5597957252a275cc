/** What the ingress suites ask of a real proxy launcher (Traefik, Caddy): the same shape as nginx's. */
export interface ProxyLocation {
  /** Path prefix clients use, e.g. `/` or `/alpha/`. */
  readonly path: string;
  /** The webhook URL the proxy asks, e.g. `http://127.0.0.1:8080/verify?scope=projects:alpha`. */
  readonly authUrl: string;
}

export interface ProxyOptions {
  readonly locations: readonly ProxyLocation[];
  /** Where allowed requests go (`http://127.0.0.1:<port>`). */
  readonly upstream: string;
  /** Headers copied from a 2xx auth answer onto the upstream request. */
  readonly authResponseHeaders: readonly string[];
}

export interface TestProxy {
  /** `http://127.0.0.1:<port>` */
  readonly url: string;
  /** The proxy's own log, for a failing test's message. */
  readonly logFile: string;
  stop(): Promise<void>;
}
