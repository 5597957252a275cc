import https from 'node:https';
import { KubeConfig } from '@kubernetes/client-node';

/**
 * Connections to the API server open at once; requests beyond wait in the agent's queue. Above
 * what the default workers, Events and the Lease need together, and a bound on what one operator
 * can open against the API server.
 */
const MAX_SOCKETS = 32;
/**
 * An idle connection is closed by the operator after this long, well before kube-apiserver's own
 * idle timeout (90 s), so a request is never written to a connection the server is closing.
 */
const IDLE_SOCKET_MS = 30_000;

type AuthContext = Parameters<KubeConfig['applySecurityAuthentication']>[0];

/**
 * A KubeConfig whose generated API clients share one keep-alive agent. client-node gives every
 * request a fresh https.Agent, so each status patch, Secret write and Event was a new TCP
 * connection and TLS handshake, with the CA, certificate and key parsed again into a new secure
 * context: in a CPU profile of 500 ApiKeys that was about a third of the operator's busy time, and
 * as much again for kube-apiserver. Authentication is still applied per request (a projected
 * ServiceAccount token is re-read as before); only the transport is shared. Watches and lists
 * (listwatch.ts) hold their own long-lived connections and are unchanged.
 */
export class PooledKubeConfig extends KubeConfig {
  #agent: https.Agent | undefined;

  override async applySecurityAuthentication(context: AuthContext): Promise<void> {
    await super.applySecurityAuthentication(context);
    const fresh = context.getAgent();
    // A proxy agent (cluster.proxyUrl) or plain http keeps client-node's own.
    if (!(fresh instanceof https.Agent) || fresh.constructor !== https.Agent) return;
    this.#agent ??= new https.Agent({
      ...fresh.options,
      keepAlive: true,
      maxSockets: MAX_SOCKETS,
      timeout: IDLE_SOCKET_MS,
    });
    context.setAgent(this.#agent);
  }
}
