import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { requireTool } from './process.js';

const run = promisify(execFile);

/** A PEM certificate and its PEM private key, as files. */
export interface KeyPairFiles {
  cert: string;
  key: string;
}

export interface CertificateRequest {
  /** File name stem inside the PKI directory: `<name>.crt`, `<name>.key`. */
  name: string;
  commonName: string;
  organizations?: string[];
  /** `DNS:…` / `IP:…` entries; required for serving certificates. */
  subjectAltNames?: string[];
  usage: 'server' | 'client';
}

export interface SigningKeyFiles {
  privateKey: string;
  publicKey: string;
}

// P-256 keys: generated in milliseconds, accepted by Go's TLS stack and by the service-account
// token signer (ES256), so a cold start does not wait on RSA prime generation.
const keyArgs = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
const validityDays = '30';

async function openssl(args: string[]): Promise<void> {
  const bin = requireTool('openssl', 'apt-get install -y openssl');
  try {
    await run(bin, args);
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr ?? '';
    throw new Error(`openssl ${args[0]} failed: ${stderr.trim() || String(err)}`);
  }
}

function subject(commonName: string, organizations: string[] = []): string {
  return [...organizations.map((o) => `/O=${o}`), `/CN=${commonName}`].join('');
}

/** A self-signed certificate authority in `dir` (`ca.crt`, `ca.key`). */
export async function createCa(dir: string, commonName: string): Promise<KeyPairFiles> {
  const ca = { cert: join(dir, 'ca.crt'), key: join(dir, 'ca.key') };
  await openssl([
    'req',
    '-x509',
    ...keyArgs,
    '-keyout',
    ca.key,
    '-out',
    ca.cert,
    '-days',
    validityDays,
    '-subj',
    subject(commonName),
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign,digitalSignature',
  ]);
  return ca;
}

/**
 * A leaf certificate signed by `ca`. Signed through a CSR and an explicit extension file so the
 * leaf carries exactly these extensions (a `req -x509` leaf would inherit `CA:TRUE` from the
 * default openssl.cnf).
 */
export async function issueCertificate(
  dir: string,
  ca: KeyPairFiles,
  request: CertificateRequest,
): Promise<KeyPairFiles> {
  const files = { cert: join(dir, `${request.name}.crt`), key: join(dir, `${request.name}.key`) };
  const csr = join(dir, `${request.name}.csr`);
  const extFile = join(dir, `${request.name}.ext`);
  await openssl([
    'req',
    '-new',
    ...keyArgs,
    '-keyout',
    files.key,
    '-out',
    csr,
    '-subj',
    subject(request.commonName, request.organizations),
  ]);
  const extensions = [
    'basicConstraints=critical,CA:FALSE',
    'keyUsage=critical,digitalSignature,keyEncipherment',
    `extendedKeyUsage=${request.usage === 'server' ? 'serverAuth' : 'clientAuth'}`,
  ];
  if (request.subjectAltNames?.length) extensions.push(`subjectAltName=${request.subjectAltNames.join(',')}`);
  await writeFile(extFile, `${extensions.join('\n')}\n`);
  await openssl([
    'x509',
    '-req',
    '-in',
    csr,
    '-CA',
    ca.cert,
    '-CAkey',
    ca.key,
    '-set_serial',
    `0x${randomBytes(16).toString('hex')}`,
    '-days',
    validityDays,
    '-extfile',
    extFile,
    '-out',
    files.cert,
  ]);
  return files;
}

/** A bare key pair (PKCS#8 private key, SPKI public key), e.g. for service-account tokens. */
export async function createSigningKeyPair(dir: string, name: string): Promise<SigningKeyFiles> {
  const files = { privateKey: join(dir, `${name}.key`), publicKey: join(dir, `${name}.pub`) };
  await openssl([
    'genpkey',
    '-algorithm',
    'EC',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-out',
    files.privateKey,
  ]);
  await openssl(['pkey', '-in', files.privateKey, '-pubout', '-out', files.publicKey]);
  return files;
}
