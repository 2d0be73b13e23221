// The ingress's key and certificate for HTTPS=1: the files given in TLS_KEY_FILE and
// TLS_CERT_FILE, or a self-signed certificate made at start. selfsigned rather than the openssl
// command line: no external binary to find (Windows), and nothing written to disk.
import { X509Certificate } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import selfsigned from 'selfsigned'

const VALID_DAYS = 30
// Where a browser or curl on this machine reaches the ingress.
const NAMES = [{ type: 2, value: 'localhost' }, { type: 7, ip: '127.0.0.1' }, { type: 7, ip: '::1' }]

/**
 * `{ key, cert, selfSigned, fingerprint }` for `config.https` (see config.js); `fingerprint` is
 * the certificate's SHA-256, printed at start so that a browser's warning can be checked against it.
 */
export async function loadCertificate ({ keyFile, certFile }) {
  const pems = keyFile
    ? { key: await readFile(keyFile, 'utf8'), cert: await readFile(certFile, 'utf8') }
    : await selfSign()
  return { ...pems, selfSigned: !keyFile, fingerprint: new X509Certificate(pems.cert).fingerprint256 }
}

async function selfSign () {
  // EC P-256 with SHA-256: made in milliseconds, and accepted by current browsers
  // (selfsigned's default signature is SHA-1, which they reject).
  const pems = await selfsigned.generate([{ name: 'commonName', value: 'localhost' }], {
    keyType: 'ec',
    algorithm: 'sha256',
    notAfterDate: new Date(Date.now() + VALID_DAYS * 24 * 3600 * 1000),
    extensions: [
      { name: 'basicConstraints', cA: false },
      { name: 'keyUsage', digitalSignature: true },
      { name: 'extKeyUsage', serverAuth: true },
      { name: 'subjectAltName', altNames: NAMES }
    ]
  })
  return { key: pems.private, cert: pems.cert }
}
